import AsyncHTTPClient
import Foundation
import NIOCore
import NIOConcurrencyHelpers
import TallySLO

/// Posts alerts to Prometheus Alertmanager's API v2 (`POST /api/v2/alerts`). Every region posts
/// the same alerts to every Alertmanager listed; Alertmanager keeps one of each (their labels
/// carry no region), as it does for a highly available pair of Prometheus servers.
///
/// Bounded: at most `inFlightMax` posts waiting per Alertmanager; past it a post is dropped and
/// counted (a firing alert is sent again at the next resend, a resolved one for 15 minutes), so
/// an Alertmanager that hangs cannot pile up requests in the node.
public final class AlertmanagerClient: Sendable {
    public let urls: [String]
    public let timeout: Duration
    public let inFlightMax: Int
    private let state = NIOLockedValueBox(State())

    struct State {
        var inFlight: [String: Int] = [:]
        var outcomes: [String: UInt64] = [:]
        var lastError: [String: String] = [:]
    }

    public init(urls: [String], timeout: Duration = .seconds(10), inFlightMax: Int = 4) {
        self.urls = urls
        self.timeout = timeout
        self.inFlightMax = inFlightMax
    }

    /// Alerts by outcome (`sent`, `failed`, `dropped`), counted per alert and Alertmanager.
    public var outcomes: [String: UInt64] { self.state.withLockedValue { $0.outcomes } }

    /// The last failure per Alertmanager URL (cleared when a post succeeds).
    public var lastErrors: [String: String] { self.state.withLockedValue { $0.lastError } }

    /// Posts `body` (`Alert.alertmanagerBody`) holding `count` alerts to every Alertmanager, and
    /// returns when every post finished or failed.
    public func post(body: String, count: Int) async {
        await withTaskGroup(of: Void.self) { group in
            for url in self.urls {
                let admitted = self.state.withLockedValue { state -> Bool in
                    guard state.inFlight[url, default: 0] < self.inFlightMax else {
                        state.outcomes["dropped", default: 0] += UInt64(count)
                        return false
                    }
                    state.inFlight[url, default: 0] += 1
                    return true
                }
                guard admitted else { continue }
                group.addTask {
                    let error = await self.send(body, to: url)
                    self.state.withLockedValue { state in
                        state.inFlight[url, default: 1] -= 1
                        state.outcomes[error == nil ? "sent" : "failed", default: 0] += UInt64(count)
                        state.lastError[url] = error
                    }
                }
            }
        }
    }

    /// One post; nil when Alertmanager took it (2xx), else what went wrong.
    private func send(_ body: String, to base: String) async -> String? {
        var request = HTTPClientRequest(url: base + "/api/v2/alerts")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "tally")
        request.body = .bytes(ByteBuffer(string: body))
        do {
            let seconds = self.timeout.components.seconds
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(seconds))
            let text = try await response.body.collect(upTo: 64 * 1_024)
            guard (200..<300).contains(Int(response.status.code)) else {
                return "\(base): HTTP \(response.status.code): \(String(buffer: text).prefix(200))"
            }
            return nil
        } catch {
            return "\(base): \(error)"
        }
    }
}
