import ArgumentParser
import Foundation
import Hummingbird
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import TallyNode

/// `tally serve --config FILE`: runs one region node until SIGTERM or SIGINT.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a region node.",
        usage: "tally serve --config <file> [--log-format <format>] [--log-level <level>]",
        discussion: """
            Opens (or creates) the data directory, replays the durable log, and serves the HTTP API. \
            SIGTERM or SIGINT stops accepting new requests, lets in-flight batches become durable \
            and be answered, and exits 0. SIGHUP reads the config file again and applies the \
            cluster's peers and TLS files without a restart; a file that does not parse or load is \
            refused with a log line naming what is wrong, and the node goes on with what it had.
            """)

    @Option(help: "The node's YAML config file.")
    var config: String
    @Option(help: "Log lines as text, or as one JSON object each.")
    var logFormat: LogFormat = .text
    @Option(help: "The least severe level logged: trace, debug (a line per request), info, notice, warning, error.")
    var logLevel: String = "info"

    enum LogFormat: String, ExpressibleByArgument, CaseIterable {
        case text, json
    }

    func validate() throws {
        guard Logger.Level(rawValue: self.logLevel) != nil else {
            throw ValidationError("--log-level '\(self.logLevel)' is not one of trace, debug, info, notice, warning, error, critical")
        }
    }

    func run() async throws {
        let nodeConfig = try CommandFailure.loadConfig(self.config)
        if self.logFormat == .json { LoggingSystem.bootstrap { JSONLogHandler(label: $0) } }
        var logger = Logger(label: "tally")
        logger.logLevel = Logger.Level(rawValue: self.logLevel) ?? .info  // validate() checked it
        let failureLogger = logger
        // Held until the process exits: one node per data directory, and no restore under it.
        let lock: DataDirectoryLock
        do {
            lock = try DataDirectoryLock(directory: nodeConfig.dataDirectory)
        } catch {
            throw CommandFailure(message: "\(self.config): the node cannot start: \(error)")
        }
        defer { withExtendedLifetime(lock) {} }
        let node: Node
        do {
            node = try await Node.start(config: nodeConfig, logger: logger) { error in
                // Fail stop: the disk is behind memory now; a restart replays exactly what is durable.
                failureLogger.critical("storage failed, exiting", metadata: ["error": "\(error)"])
                Foundation.exit(70)
            }
        } catch {
            throw CommandFailure(message: "\(self.config): the node cannot start: \(error)")
        }
        // swift-metrics into the node's registry: Hummingbird's metrics middleware reports there.
        var factory = PrometheusMetricsFactory(registry: node.metrics.registry)
        factory.nameAndLabelSanitizer = NodeMetrics.sanitize
        MetricsSystem.bootstrap(factory)
        let reloads = Self.reloadOnHangup(node: node, path: self.config, logger: logger)
        defer { reloads.cancel() }
        let app = Application(
            router: API.router(node: node), server: API.server(nodeConfig), configuration: API.configuration(nodeConfig),
            onServerRunning: { channel in
                // The address is known once the channel is bound; scripts wait for this line.
                let address = channel.localAddress.map { "\($0)" } ?? "?"
                FileHandle.standardOutput.write(
                    Data("tally node \(nodeConfig.node) (\(nodeConfig.region)) listening on \(address)\n".utf8))
            },
            logger: logger)
        var services: [any Service] = [node, app]
        if let otlp = nodeConfig.otlp {
            services.append(Application(
                router: OTLPReceiver.router(node: node, config: otlp), server: API.server(nodeConfig),
                configuration: OTLPReceiver.configuration(nodeConfig, otlp),
                onServerRunning: { channel in
                    let address = channel.localAddress.map { "\($0)" } ?? "?"
                    FileHandle.standardOutput.write(Data("tally node \(nodeConfig.node) OTLP/HTTP on \(address)\n".utf8))
                },
                logger: logger))
        }
        if let statsd = nodeConfig.statsd {
            services.append(StatsDService(node: node, config: statsd, nodeName: nodeConfig.node))
        }
        // The node first: services stop in reverse order, so HTTP drains before the node's last
        // checkpoint. A server that cannot listen cancels the group, and the node stops too.
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch {
            await node.stop()
            // Every listener the group ran, so a taken port is found among them.
            var listeners = ["listen \(nodeConfig.listenHost):\(nodeConfig.listenPort)"]
            if let otlp = nodeConfig.otlp { listeners.append("otlp.listen \(otlp.listenHost):\(otlp.listenPort)") }
            if let udp = nodeConfig.statsd?.udp { listeners.append("statsd.udp \(udp.host):\(udp.port)") }
            if let tcp = nodeConfig.statsd?.tcp { listeners.append("statsd.tcp \(tcp.host):\(tcp.port)") }
            throw CommandFailure(message: "\(listeners.joined(separator: ", ")): cannot serve: " + Node.describe(error))
        }
        await node.stop()  // already stopped by the group; a second stop does nothing
        logger.info("stopped")
    }
}

extension Serve {
    /// On every SIGHUP: parse the config file again and hand it to the node, logging the outcome.
    static func reloadOnHangup(node: Node, path: String, logger: Logger) -> DispatchSourceSignal {
        signal(SIGHUP, SIG_IGN)  // delivered to the dispatch source instead of terminating the process
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        source.setEventHandler {
            Task {
                do {
                    let config = try NodeConfig.load(path: path)
                    let notes = try await node.reload(config)
                    logger.notice("config reloaded", metadata: ["file": "\(path)", "changes": "\(notes)"])
                } catch {
                    logger.error("config reload refused; the node keeps its running config", metadata: [
                        "file": "\(path)", "error": "\(error)",
                    ])
                }
            }
        }
        source.resume()
        return source
    }
}

/// A failure of the command's work rather than of its arguments: reported without the usage text.
struct CommandFailure: Error, CustomStringConvertible {
    var message: String
    var description: String { self.message }

    /// A node's config file for a command that acts on the node (serve, backup, restore).
    static func loadConfig(_ path: String) throws(CommandFailure) -> NodeConfig {
        do {
            return try NodeConfig.load(path: path)
        } catch {
            throw CommandFailure(message: "invalid config: \(error)")
        }
    }
}

/// The StatsD listeners as a service of the group: bound at start, closed first at shutdown (the
/// group stops services in reverse order), so their last lines reach the node before it stops.
struct StatsDService: Service {
    let node: Node
    let config: StatsDConfig
    let nodeName: String

    func run() async throws {
        let listener = try await StatsDListener.start(node: self.node, config: self.config)
        for address in listener.addresses {
            FileHandle.standardOutput.write(Data("tally node \(self.nodeName) StatsD on \(address)\n".utf8))
        }
        try? await gracefulShutdown()
        await listener.stop()
    }
}
