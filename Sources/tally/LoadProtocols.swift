import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import TallyNode
import TallyProtocols
import TallyReplica

#if canImport(Glibc)
import Glibc
#endif

/// `tally load --protocol otlp|statsd`: the throughput benchmarks of the drop-in receivers.
///
/// OTLP: protobuf export requests of `--batch` SERVER spans, each span with an id of its own (a
/// template request is serialized once and its span ids patched in place), POSTed with
/// `--concurrency` in flight and retried until answered (safe: spans are counted once by id).
/// StatsD: UDP datagrams of `--lines-per-datagram` timer lines at `--rate` lines per second. Both
/// end by reading the node's `/metrics` (`--api`) and comparing what it counted with what was sent.
extension Load {
    func runOTLP() async throws {
        let template = Self.traceTemplate(spans: self.batch, services: self.services, operations: self.operations)
        let client = HTTPClient.shared
        let before = try await self.metric("tally_otlp_spans_total{outcome=\"accepted\"}", client: client)
        let run = UInt64.random(in: 1...UInt64.max)
        let totalRequests = self.rate == 0
            ? Int.max : max(1, Int((Double(self.rate) * self.duration / Double(self.batch)).rounded()))
        let interval = self.rate == 0 ? Duration.zero : .seconds(Double(self.batch) / Double(self.rate))
        let started = ContinuousClock.now
        let deadline = started + .seconds(self.duration)
        let shared = Shared()
        let sent = SentCounter()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<self.concurrency {
                group.addTask {
                    while true {
                        let index = await shared.next()
                        guard index < totalRequests else { return }
                        if interval > .zero {
                            let due = started + interval * index
                            if due >= deadline { return }
                            try await Task.sleep(until: due, clock: .continuous)
                        } else if ContinuousClock.now >= deadline {
                            return
                        }
                        var body = template.bytes
                        for (position, offset) in template.spanIDOffsets.enumerated() {
                            let id = (run &+ UInt64(index) &* 1_000_003 &+ UInt64(position)) | 1
                            withUnsafeBytes(of: id.littleEndian) { body.replaceSubrange(offset..<offset + 8, with: $0) }
                        }
                        try await self.postUntilAnswered(body, client: client)
                        await sent.add(self.batch)
                    }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = ContinuousClock.now - started
        let spans = await sent.total
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let after = try await self.metric("tally_otlp_spans_total{outcome=\"accepted\"}", client: client)
        print("otlp: \(spans) spans in \(String(format: "%.1f", seconds)) s: \(Int(Double(spans) / seconds)) spans/s acknowledged (durable)")
        let counted = Int(after - before)
        print("node counted \(counted) new spans (\(counted == spans ? "equal to" : "DIFFERENT FROM") the \(spans) sent)")
        if counted != spans { throw ExitCode.failure }
    }

    /// POSTs one export request until the node answers 200; 429, 503 and connection errors retry.
    func postUntilAnswered(_ body: [UInt8], client: HTTPClient) async throws {
        let giveUp = ContinuousClock.now + .seconds(self.retryFor)
        while true {
            var request = HTTPClientRequest(url: self.target + "/v1/traces")
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/x-protobuf")
            request.headers.add(name: "Authorization", value: "Bearer \(self.key)")
            request.body = .bytes(ByteBuffer(bytes: body))
            do {
                let response = try await client.execute(request, timeout: .seconds(30))
                _ = try await response.body.collect(upTo: 1 << 20)
                if response.status == .ok { return }
                guard response.status == .tooManyRequests || response.status == .serviceUnavailable else {
                    throw CommandFailure(message: "the node answered \(response.status) to an export request")
                }
            } catch let error as CommandFailure {
                throw error
            } catch {
                // A connection error: retry, as an exporter does.
            }
            guard ContinuousClock.now < giveUp else { throw CommandFailure(message: "an export was not answered for \(self.retryFor) s") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// A request of `spans` SERVER spans, serialized, and where each span id's 8 bytes are.
    static func traceTemplate(spans: Int, services: Int, operations: Int) -> (bytes: [UInt8], spanIDOffsets: [Int]) {
        let end = UInt64(Node.wallClock().millisecondsSinceEpoch - 1_000) * 1_000_000
        var request = Opentelemetry_Proto_Collector_Trace_V1_ExportTraceServiceRequest()
        var markers: [[UInt8]] = []
        for service in 0..<max(1, min(services, spans)) {
            var resource = Opentelemetry_Proto_Trace_V1_ResourceSpans()
            var name = Opentelemetry_Proto_Common_V1_KeyValue()
            name.key = "service.name"
            name.value.stringValue = "otlp-\(service)"
            resource.resource.attributes = [name]
            var scope = Opentelemetry_Proto_Trace_V1_ScopeSpans()
            scope.scope.name = "tally-load"
            for index in stride(from: service, to: spans, by: max(1, min(services, spans))) {
                var span = Opentelemetry_Proto_Trace_V1_Span()
                span.traceID = Data((0..<16).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index) | 1 })
                // A marker no other bytes of the request contain: 0xA5 0x5A, then the index.
                let marker: [UInt8] = [0xA5, 0x5A, 0xC3, 0x3C] + withUnsafeBytes(of: UInt32(index).littleEndian, Array.init)
                markers.append(marker)
                span.spanID = Data(marker)
                span.name = "GET /op-\(index % max(1, operations))"
                span.kind = .server
                let latency = UInt64(1_000_000 + (index &* 7_919) % 200_000_000)
                span.startTimeUnixNano = end - latency
                span.endTimeUnixNano = end
                var route = Opentelemetry_Proto_Common_V1_KeyValue()
                route.key = "http.route"
                route.value.stringValue = "/op-\(index % max(1, operations))"
                var status = Opentelemetry_Proto_Common_V1_KeyValue()
                status.key = "http.response.status_code"
                status.value.intValue = index % 50 == 0 ? 503 : 200
                var method = Opentelemetry_Proto_Common_V1_KeyValue()
                method.key = "http.request.method"
                method.value.stringValue = "GET"
                span.attributes = [method, route, status]
                scope.spans.append(span)
            }
            resource.scopeSpans = [scope]
            request.resourceSpans.append(resource)
        }
        let bytes: [UInt8] = (try? request.serializedBytes()) ?? []
        var offsets: [Int] = []
        for marker in markers {
            var position = 0
            while position + 8 <= bytes.count {
                if bytes[position] == 0xA5 && Array(bytes[position..<position + 8]) == marker {
                    offsets.append(position)
                    break
                }
                position += 1
            }
        }
        precondition(offsets.count == markers.count, "every span id found in the template")
        return (bytes, offsets)
    }

    // MARK: - StatsD

    func runStatsD() async throws {
        guard let url = URL(string: self.target), url.scheme == "udp", let host = url.host, let port = url.port else {
            throw CommandFailure(message: "--target must be udp://HOST:PORT for --protocol statsd")
        }
        let client = HTTPClient.shared
        let before = try await self.metric("tally_statsd_lines_total{outcome=\"mapped\"}", client: client)
        let descriptor = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard descriptor >= 0 else { throw CommandFailure(message: "cannot open a UDP socket") }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host, &address.sin_addr) == 1 else {
            throw CommandFailure(message: "\(host) is not an IPv4 address")
        }
        // Datagrams of timer lines, one per service and operation in turn.
        let linesPerDatagram = self.linesPerDatagram
        var datagrams: [[UInt8]] = []
        for index in 0..<64 {
            var text = ""
            for line in 0..<linesPerDatagram {
                let n = index * linesPerDatagram + line
                if line > 0 { text += "\n" }
                text += "statsd-\(n % self.services).op-\(n % self.operations):\(1 + n % 997).5|ms|#status:\(n % 50 == 0 ? 503 : 200)"
            }
            datagrams.append(Array(text.utf8))
        }
        let started = ContinuousClock.now
        let totalDatagrams = Int(Double(self.rate) * self.duration / Double(linesPerDatagram))
        var sentDatagrams = 0
        // Paced in 1 ms slices: each sends the datagrams due by then.
        while sentDatagrams < totalDatagrams {
            let elapsed = ContinuousClock.now - started
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            let due = self.rate == 0 ? totalDatagrams : min(totalDatagrams, Int(seconds * Double(self.rate) / Double(linesPerDatagram)) + 1)
            while sentDatagrams < due {
                let bytes = datagrams[sentDatagrams % datagrams.count]
                _ = withUnsafePointer(to: &address) { pointer in
                    pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                        bytes.withUnsafeBytes { sendto(descriptor, $0.baseAddress, $0.count, 0, socketAddress,
                                                       socklen_t(MemoryLayout<sockaddr_in>.size)) }
                    }
                }
                sentDatagrams += 1
            }
            if self.rate > 0 { try await Task.sleep(for: .milliseconds(1)) }
        }
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let lines = sentDatagrams * linesPerDatagram
        // What was received is counted once the node has drained its queue.
        var counted = 0.0
        for _ in 0..<50 {
            try await Task.sleep(for: .milliseconds(200))
            let now = try await self.metric("tally_statsd_lines_total{outcome=\"mapped\"}", client: client) - before
            if now == counted && now > 0 { break }
            counted = now
        }
        let loss = lines == 0 ? 0 : 100 * (1 - counted / Double(lines))
        print("statsd: \(lines) lines in \(sentDatagrams) datagrams over \(String(format: "%.1f", seconds)) s "
            + "(\(Int(Double(lines) / seconds)) lines/s offered)")
        print("node counted \(Int(counted)) lines: \(String(format: "%.3f", loss))% lost")
    }

    /// A sample of the node's `/metrics` (`--api`).
    func metric(_ name: String, client: HTTPClient) async throws -> Double {
        var request = HTTPClientRequest(url: self.api + "/metrics")
        request.headers.add(name: "Authorization", value: "Bearer \(self.key)")
        let response = try await client.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 16 << 20)
        let text = String(buffer: body)
        for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.split(separator: " ").last ?? "0") ?? 0
        }
        return 0
    }
}

/// Spans acknowledged so far.
actor SentCounter {
    private(set) var total = 0
    func add(_ count: Int) { self.total += count }
}
