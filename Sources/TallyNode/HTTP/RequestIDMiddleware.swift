import HTTPTypes
import Hummingbird
import Logging

extension HTTPField.Name {
    /// The request's id, on every answer: the same id is the `hb.request.id` of every log line the
    /// request wrote, so a client's report ("request 3f9a... got a 503") finds its log lines.
    public static let requestID = Self("X-Request-Id")!
}

/// Puts the request id on every answer and writes one log line per request: at debug level when
/// it succeeded or the client was refused (a 4xx is the client's to fix, and a storm of them must
/// not flood the log), at warning level for the node's own failures (5xx).
struct RequestIDMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        let started = ContinuousClock.now
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as any HTTPResponseError {
            response = try error.response(from: request, context: context)
        }
        response.headers[.requestID] = context.id
        let milliseconds = (NodeMetrics.seconds(ContinuousClock.now - started) * 1_000 * 1_000).rounded() / 1_000
        let level: Logger.Level = response.status.code >= 500 ? .warning : .debug
        context.logger.log(level: level, "answered", metadata: [
            "method": "\(request.method)", "path": "\(request.uri.path)", "status": "\(response.status.code)",
            "duration_ms": "\(milliseconds)",
        ])
        return response
    }
}
