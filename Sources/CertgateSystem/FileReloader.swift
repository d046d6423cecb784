import CertgateLocking
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Keeps a value built from files current, for files that may be replaced at any time.
///
/// The files are read again on every poll and compared with what was last seen, which
/// catches every way they change, including Kubernetes' swap of the `..data` symlink behind
/// a mounted Secret or ConfigMap. Contents that do not build (a half-written file, a key
/// that does not match) leave the last good value in force and are reported once per
/// distinct content.
public final class FileReloader<Value: Sendable>: Sendable {
    /// What a reload attempt found.
    public enum Event: Sendable {
        case loaded(Value)
        case rejected(Error)
    }

    /// Builds the value from the files' contents, in the order of `paths`; nil for a file
    /// that could not be read.
    public typealias Build = @Sendable ([[UInt8]?]) throws -> Value

    public let paths: [String]
    private let build: Build
    private let onEvent: @Sendable (Event) -> Void
    private let current = Locked<Value?>(nil)
    private let lastSeen = Locked<[[UInt8]?]?>(nil)
    /// The polling thread and what stops it, while watching.
    private let watcher = Locked<(thread: JoinableThread, stop: StopSignal)?>(nil)

    /// - Parameter onEvent: called after every load attempt whose inputs changed (for logs and metrics).
    public init(paths: [String], build: @escaping Build, onEvent: @escaping @Sendable (Event) -> Void = { _ in }) {
        self.paths = paths
        self.build = build
        self.onEvent = onEvent
    }

    /// The last value that built; nil until one has.
    public var value: Value? { current.withLock { $0 } }

    /// Reads the files and swaps in a new value if they changed and build.
    /// Returns the error when they changed and did not build.
    @discardableResult
    public func reload() -> Error? {
        let contents = paths.map(readWholeFile)
        let changed = lastSeen.withLock { last -> Bool in
            if let last, last == contents { return false }
            last = contents
            return true
        }
        guard changed else { return nil }
        do {
            let value = try build(contents)
            current.withLock { $0 = value }
            onEvent(.loaded(value))
            return nil
        } catch {
            onEvent(.rejected(error))
            return error
        }
    }

    /// Polls the files every `interval` seconds on a thread of its own until
    /// ``stopWatching()``, as the control plane's other background loops do. Watching
    /// already is a no-op; throws when the system refuses a thread.
    public func startWatching(interval: Double = 1.0) throws {
        try watcher.withLock { watcher in
            guard watcher == nil else { return }
            let stop = StopSignal()
            let thread = try JoinableThread(name: "file-watch") { [weak self] in
                while stop.sleep(interval) { self?.reload() }
            }
            watcher = (thread, stop)
        }
    }

    /// Stops polling and returns once no poll runs: a reload in flight finishes first, and
    /// none starts after. Not to be called from `build` or `onEvent`, which it would wait for.
    public func stopWatching() {
        guard let (thread, stop) = watcher.withLock({ watcher in defer { watcher = nil }; return watcher }) else { return }
        stop.stop()
        thread.join()
    }
}

/// Reads a whole file through any symlinks; nil if it cannot be read.
public func readWholeFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var result: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 16 * 1024)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 { if errno == EINTR { continue }; return nil }
        if count == 0 { return result }
        result.append(contentsOf: chunk[0..<count])
    }
}

/// A file that could not be read.
public struct UnreadableFileError: Error, CustomStringConvertible {
    public let path: String
    /// What the file is for ("serving certificate", "policy").
    public let role: String

    public init(path: String, role: String) {
        self.path = path
        self.role = role
    }

    public var description: String { "cannot read the \(role) file \(path): it does not exist or is not readable" }
}
