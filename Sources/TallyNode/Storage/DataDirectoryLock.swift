import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An exclusive lock on a data directory (`flock` on `<data_dir>/lock`), held by `tally serve` for
/// its lifetime and by `tally restore` while it writes. Two nodes on one store would each append
/// their own log and checkpoints over the other's; a restore under a running node would be
/// overwritten by its next checkpoint. The kernel drops the lock when the process dies, kill -9
/// included, so a crash never leaves a directory locked.
public final class DataDirectoryLock: Sendable {
    private let descriptor: Int32
    public let path: String

    /// Takes the lock, or throws naming the directory if another process holds it.
    public init(directory: String) throws(EventStore.StoreError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw .failed("data_dir \(directory) cannot be created: \(error.localizedDescription)")
        }
        self.path = (directory as NSString).appendingPathComponent("lock")
        let descriptor = open(self.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw .failed("cannot open \(self.path): \(String(cString: strerror(errno)))")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let reason = errno == EWOULDBLOCK ? "another process holds it (a node running on this data_dir?)"
                                              : String(cString: strerror(errno))
            close(descriptor)
            throw .failed("data_dir \(directory) is in use: \(self.path) is locked; \(reason)")
        }
        self.descriptor = descriptor
    }

    deinit {
        close(self.descriptor)  // releases the lock
    }
}
