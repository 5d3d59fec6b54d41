import TallyAggregates

/// One series' counts from one origin over every retained day: what an export (Prometheus) shows.
public struct OriginTotals: Sendable, Equatable {
    public var key: SeriesKey
    public var origin: ReplicaID
    public var requests: UInt64
    public var errors: UInt64
    /// The origin's latencies, its histograms of every day added up.
    public var latency: LatencyDistribution
}

extension Replica {
    /// A read bigger than `bucketsMax` day buckets.
    public struct TotalsTooLarge: Error, Equatable, CustomStringConvertible {
        public var buckets: Int
        public var limit: Int
        public var description: String {
            "the totals read \(self.buckets) day buckets, more than the \(self.limit) one read may (limits.query)"
        }
    }

    /// Per series and origin, the totals of every retained day bucket, in series then origin order.
    ///
    /// Day buckets are the coarsest and the longest kept, so these only grow while the oldest day
    /// is retained (5 years by default): an export's counters are monotone until then. The cost is
    /// one pass over the day buckets, bounded by the query limit on buckets read.
    public func dayTotals() throws(TotalsTooLarge) -> [OriginTotals] {
        let limit = self.config.limits.query.bucketsMax
        let read = self.series.reduce(0) { $0 + $1.buckets[Resolution.day.rawValue].count }
        guard read <= limit else { throw TotalsTooLarge(buckets: read, limit: limit) }
        var totals: [OriginTotals] = []
        for series in self.series.sorted(by: { $0.key < $1.key }) {
            var byOrigin: [ReplicaID: (requests: UInt64, errors: UInt64, latency: LatencyDistribution)] = [:]
            for (_, aggregate) in series.buckets[Resolution.day.rawValue].all {
                aggregate.requests.forEachOrigin { origin, value in
                    byOrigin[origin, default: (0, 0, LatencyDistribution(scale: aggregate.latency.scale))].requests &+= value
                }
                aggregate.errors.forEachOrigin { origin, value in
                    byOrigin[origin, default: (0, 0, LatencyDistribution(scale: aggregate.latency.scale))].errors &+= value
                }
                for origin in aggregate.latency.origins {
                    byOrigin[origin, default: (0, 0, LatencyDistribution(scale: aggregate.latency.scale))]
                        .latency.add(aggregate.latency.projection(of: origin))
                }
            }
            for origin in byOrigin.keys.sorted() {
                let value = byOrigin[origin]!
                totals.append(OriginTotals(key: series.key, origin: origin, requests: value.requests, errors: value.errors,
                                           latency: value.latency))
            }
        }
        return totals
    }
}
