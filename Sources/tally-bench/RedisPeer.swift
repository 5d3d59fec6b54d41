import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A `redis-server` this benchmark starts on loopback, in a directory of its own, and stops.
///
/// Spawned and reaped with posix_spawn, kill and waitpid: Foundation's `Process` waits for its
/// child on a run loop, which an async command's threads do not run.
final class RedisServer {
    let port: UInt16
    private var pid: pid_t = 0
    private let directory: String

    enum Failure: Error, CustomStringConvertible {
        case notInstalled
        case didNotStart(String)

        var description: String {
            switch self {
            case .notInstalled:
                return "redis-server was not found on PATH (Debian: apt-get install redis-server)"
            case .didNotStart(let why): return "redis-server did not start: \(why)"
            }
        }
    }

    /// Starts a server with persistence off (`fsyncAlways` false) or with an append-only file
    /// fsynced before every reply (`appendfsync always`): Redis's durable setting.
    init(fsyncAlways: Bool) throws {
        guard let executable = Self.find("redis-server") else { throw Failure.notInstalled }
        self.directory = NSTemporaryDirectory() + "tally-bench-redis-\(getpid())-\(fsyncAlways ? "aof" : "mem")"
        try? FileManager.default.removeItem(atPath: self.directory)
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        self.port = try Self.freePort()
        var arguments = [executable, "--port", "\(self.port)", "--bind", "127.0.0.1", "--dir", self.directory,
                         "--save", "", "--daemonize", "no", "--logfile", self.directory + "/redis.log"]
        arguments += fsyncAlways ? ["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"]
        var argv = arguments.map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        let spawned = posix_spawn(&self.pid, executable, nil, nil, &argv, environ)
        guard spawned == 0 else { throw Failure.didNotStart("posix_spawn: error \(spawned)") }
        // Ready when it answers PING.
        for _ in 0..<200 {
            if let connection = try? RedisConnection(port: self.port) {
                var ping = RESPWriter()
                ping.command(["PING"])
                if (try? connection.exchange(ping.bytes, replies: 1)) != nil { return }
            }
            var status: Int32 = 0
            if waitpid(self.pid, &status, WNOHANG) == self.pid {
                self.pid = 0
                break
            }
            usleep(25_000)
        }
        let log = (try? String(contentsOfFile: self.directory + "/redis.log", encoding: .utf8)) ?? ""
        self.stop()
        throw Failure.didNotStart(log.split(separator: "\n").suffix(3).joined(separator: " | "))
    }

    func stop() {
        if self.pid > 0 {
            kill(self.pid, SIGKILL)
            var status: Int32 = 0
            waitpid(self.pid, &status, 0)
            self.pid = 0
        }
        try? FileManager.default.removeItem(atPath: self.directory)
    }

    deinit { self.stop() }

    private static func find(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") + ["/usr/sbin", "/usr/bin"] {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// A loopback port nothing listens on now (the kernel picks it).
    private static func freePort() throws -> UInt16 {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw Failure.didNotStart("no socket: errno \(errno)") }
        defer { close(socket) }
        var address = RedisConnection.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw Failure.didNotStart("bind: errno \(errno)") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) }
        }
        return UInt16(bigEndian: address.sin_port)
    }
}

/// RESP commands, appended to one buffer: a pipeline.
struct RESPWriter {
    private(set) var bytes: [UInt8] = []
    private(set) var commands = 0

    mutating func command(_ arguments: [String]) {
        self.header(arguments.count)
        for argument in arguments { self.bulk(argument.utf8) }
        self.commands += 1
    }

    /// A command whose arguments are byte strings already (the hot path: no `String` per argument).
    mutating func command(_ name: StaticString, _ arguments: [UInt8]...) {
        self.header(arguments.count + 1)
        self.bulk(UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
        for argument in arguments { self.bulk(argument) }
        self.commands += 1
    }

    mutating func removeAll() {
        self.bytes.removeAll(keepingCapacity: true)
        self.commands = 0
    }

    private mutating func header(_ count: Int) {
        self.bytes.append(UInt8(ascii: "*"))
        self.decimal(count)
        self.bytes += [13, 10]
    }

    private mutating func bulk<Bytes: Collection<UInt8>>(_ value: Bytes) {
        self.bytes.append(UInt8(ascii: "$"))
        self.decimal(value.count)
        self.bytes += [13, 10]
        self.bytes += value
        self.bytes += [13, 10]
    }

    private mutating func decimal(_ value: Int) {
        if value >= 10 { self.decimal(value / 10) }
        self.bytes.append(UInt8(ascii: "0") + UInt8(value % 10))
    }
}

/// One blocking connection to a Redis server on loopback: writes a pipeline, reads its replies.
final class RedisConnection {
    private let socket: Int32
    private var buffer = [UInt8](repeating: 0, count: 1 << 16)

    enum Failure: Error, CustomStringConvertible {
        case io(String)
        case reply(String)

        var description: String {
            switch self {
            case .io(let what): return "Redis connection: \(what)"
            case .reply(let text): return "Redis answered an error: \(text)"
            }
        }
    }

    init(port: UInt16) throws {
        self.socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard self.socket >= 0 else { throw Failure.io("socket: errno \(errno)") }
        var address = Self.loopback(port: port)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(self.socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            close(self.socket)
            throw Failure.io("connect to 127.0.0.1:\(port): errno \(errno)")
        }
        var on: Int32 = 1
        setsockopt(self.socket, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit { close(self.socket) }

    static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return address
    }

    /// Sends `pipeline` and reads `replies` replies; every reply here is one line (`:n`, `+OK`,
    /// `-ERR ...`), and an error reply fails the run rather than being counted as work done.
    func exchange(_ pipeline: [UInt8], replies: Int) throws {
        var sent = 0
        while sent < pipeline.count {
            let written = pipeline.withUnsafeBytes { write(self.socket, $0.baseAddress! + sent, pipeline.count - sent) }
            guard written > 0 else { throw Failure.io("write: errno \(errno)") }
            sent += written
        }
        var lines = 0
        var lineStart = true
        var errorText: [UInt8]?
        while lines < replies {
            let count = self.buffer.withUnsafeMutableBytes { read(self.socket, $0.baseAddress!, $0.count) }
            guard count > 0 else { throw Failure.io(count == 0 ? "closed by the server" : "read: errno \(errno)") }
            for position in 0..<count {
                let byte = self.buffer[position]
                if lineStart && byte == UInt8(ascii: "-") && errorText == nil { errorText = [] }
                lineStart = false
                if byte == 10 {
                    lines += 1
                    lineStart = true
                    if let text = errorText { throw Failure.reply(String(decoding: text, as: UTF8.self)) }
                } else if errorText != nil {
                    errorText!.append(byte)
                }
            }
        }
    }
}
