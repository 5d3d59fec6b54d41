import TallyAggregates
import TallyReplica

/// What a node restored from a backup starts from: the decision that keeps a restore from counting
/// an event twice or hiding the events counted after it.
///
/// A backup is the node's store at one instant: the checkpointed image and the log after it. By the
/// time it is restored, the node (origin X) has usually gone on: it acknowledged more events, and
/// its peers hold X's slots with larger values than the backup's. So the restored node
///
/// - starts as a **new incarnation** (origin Y, `incarnation(replacing:fresh:)`): counting on under
///   X from the backup's smaller slots would hide everything it counts next behind the peers'
///   larger ones (as after a lost store, `Incarnation`). The restore records Y in the store and in
///   the identity file, so the node starts as Y;
/// - keeps the **image**: X's slots as of the checkpoint, and X's chain head among the other
///   origins', so the peers bring it X's later changes (what X acknowledged after the backup and
///   replicated) like any other origin's, joined by maximum, never added. An origin does not
///   track how current it is about itself, so X's head is marked current as of the checkpoint's
///   time (its image was exact then), not as of the beginning of time;
/// - drops the **log after the checkpoint** when the node has peers (`keepsLog(clustered:)`): those
///   are X's events, and replayed now they would be counted under Y, a second time for every one X
///   had replicated. What they held that X never replicated is lost, as with a lost disk
///   (docs/tradeoffs.md). A node without peers keeps it: nobody else counted those events, so
///   replaying them under Y counts each once;
/// - drops the **own chain**: X's recent batches are not Y's, and Y's chain starts afresh;
/// - names X in the **origin directory** as the region's (if the backup's did not already), so
///   that once Y announces itself X is retired: X never publishes again, and its staleness would
///   otherwise grow for good and page somebody (`OriginDirectory`).
///
/// The store carries this out on its tables (`EventStore.restore`); the simulator's `restore`
/// fault applies `image(ofBackup:)` to its disk model, and the scenario
/// `simulations/restore-from-backup.yaml` checks that every acknowledged event is counted once.
public enum Restore {
    /// The incarnation a restored store gets: a fresh one, above the backup's whatever the clock
    /// says, so it can never be the old origin.
    public static func incarnation(replacing old: UInt64?, fresh: UInt64) -> UInt64 {
        max(fresh, (old ?? 0) &+ 1)
    }

    /// Whether a restored store keeps the backup's log after its checkpoint: only when no peer can
    /// have counted those events already.
    public static func keepsLog(clustered: Bool) -> Bool { !clustered }

    /// The image a node of `region` restored from `backup` (the image of origin `origin`'s store)
    /// starts from; its log is empty.
    public static func image(ofBackup backup: ReplicaSnapshot, origin: ReplicaID, region: String) -> ReplicaSnapshot {
        var image = backup
        image.ownChain = nil
        if !image.originDirectory.contains(where: { $0.origin == origin }) {
            image.originDirectory.append(OriginDirectory.Entry(origin: origin, region: region, announced: 0))
        }
        if let takenAt = backup.takenAt, let own = image.origins.firstIndex(where: { $0.origin == origin }) {
            image.origins[own].currentAsOf = max(image.origins[own].currentAsOf, takenAt)
        }
        return image
    }
}
