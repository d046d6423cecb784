import CertgateLocking
internal import CLinux
import Glibc
import Synchronization

/// Starts a named POSIX thread running `body` (Foundation's Thread would pull in all of
/// Foundation and its ICU data for this one call).
package func startThread(name: String, _ body: @escaping () -> Void) -> Glibc.pthread_t? {
    final class Box { let body: () -> Void; init(_ body: @escaping () -> Void) { self.body = body } }
    let context = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let result = pthread_create(&thread, nil, { context in
        let box = Unmanaged<Box>.fromOpaque(context!).takeRetainedValue()
        box.body()
        return nil
    }, context)
    guard result == 0 else {
        Unmanaged<Box>.fromOpaque(context).release()
        return nil
    }
    pthread_setname_np(thread, String(name.prefix(15)))
    return thread
}

/// Runs `body` on a new named thread that nobody joins. Only for the process's own
/// plumbing (test servers, benchmarks); the control plane's threads are ``JoinableThread``s,
/// joined by whoever started them.
public func spawnDetachedThread(name: String, _ body: @escaping @Sendable () -> Void) {
    if let thread = startThread(name: name, body) {
        pthread_detach(thread)
    }
}

/// A named thread its owner joins when it stops: after ``join()`` returns, nothing the
/// thread ran is still running.
public final class JoinableThread: Sendable {
    private let thread: Locked<pthread_t?>
    public let name: String

    /// Starts `body` at once. Throws when the system refuses another thread.
    public init(name: String, _ body: @escaping @Sendable () -> Void) throws {
        self.name = name
        guard let thread = startThread(name: name, body) else { throw SystemError("starting thread \(name)", errno: EAGAIN) }
        self.thread = Locked(thread)
    }

    /// Waits until the thread's body has returned; later calls return at once. A thread
    /// must not join itself.
    public func join() {
        guard let thread = self.thread.withLock({ thread -> pthread_t? in
            defer { thread = nil }
            return thread
        }) else { return }
        precondition(pthread_equal(thread, pthread_self()) == 0, "thread \(name) joining itself")
        pthread_join(thread, nil)
    }

    deinit {
        // A thread never joined keeps running unowned: detach it so its resources are freed.
        if let thread = thread.withLock({ $0 }) { pthread_detach(thread) }
    }
}
