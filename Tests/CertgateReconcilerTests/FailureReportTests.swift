import CertgateKube
import CertgateKubeTesting
import CertgatePKI
@testable import CertgateReconciler
import CertgateTestSupport
import Foundation
import Logging
import Testing

/// Log lines kept in memory: "level: message reason=R".
struct MemoryLogHandler: LogHandler {
    let lines: Shared<[String]>
    var logLevel: Logger.Level = .debug
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String, function: String, line: UInt) {
        let reason = metadata?["reason"].map { " reason=\($0)" } ?? ""
        lines.update { $0.append("\(level): \(message)\(reason)") }
    }
}

@Suite struct FailureReportTests {
    /// A failing reconcile is logged at warning once with the Pki's key and the reason, not on
    /// every retry, counted every time, and logged again once it failed anew after working.
    @Test func aFailingReconcileIsLoggedOnceAndCountedEveryTime() throws {
        let lines = Shared<[String]>([])
        let counted = Shared<[String]>([])
        let reporter = FailureReporter(logger: Logger(label: "test") { _ in MemoryLogHandler(lines: lines) }) { reason in
            counted.update { $0.append(reason) }
        }
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration(), limits: KubeClientLimits(qps: 100_000, burst: 100_000))
        let reconciler = PkiReconciler(policy: { examplePolicy }, bootstrapCA: true, failures: reporter)
        let context = ReconcileContext.live(client: client, events: EventRecorder(client: client))
        try reconciler.bootstrapAuthorities(in: context)
        _ = try client.create(.pkis, namespace: "app1", Pki(metadata: ObjectMeta(name: "app1-pki", namespace: "app1"),
                                                                    spec: PkiSpec(serviceName: "app1", dnsNames: ["app1.app1.svc"])))
        api.failNext(3, status: 500)
        for _ in 0..<3 { #expect(reconciler.reconcile(namespace: "app1", name: "app1-pki", in: context) != .done(requeueAfter: nil)) }
        #expect(counted.value == ["InternalError", "InternalError", "InternalError"])
        let warnings = lines.value.filter { $0.hasPrefix("warning") }
        #expect(warnings == ["warning: reconcile of Pki app1/app1-pki failed; retrying with backoff reason=InternalError"], "\(lines.value)")

        if case .retry = reconciler.reconcile(namespace: "app1", name: "app1-pki", in: context) { Issue.record("still failing") }
        api.failNext(1, status: 500)
        _ = reconciler.reconcile(namespace: "app1", name: "app1-pki", in: context)
        #expect(lines.value.filter { $0.hasPrefix("warning") }.count == 2, "news again after it had worked: \(lines.value)")
    }

    /// An informer that cannot list says so once, with the resource, and counts each try.
    @Test func anInformerThatCannotListSaysSoOnce() throws {
        let lines = Shared<[String]>([])
        let counted = Shared(0)
        let reporter = FailureReporter(logger: Logger(label: "test") { _ in MemoryLogHandler(lines: lines) }) { _ in counted.update { $0 += 1 } }
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        api.failNext(2, status: 500)
        let informer = Informer<Pki>(client: client, resource: .pkis, namespace: "app1", failures: reporter,
                                             handlers: InformerHandlers(onAdd: { _ in }, onUpdate: { _, _ in }, onDelete: { _ in }))
        try informer.start()
        defer { informer.stop() }
        let deadline = Date().addingTimeInterval(15)
        while !informer.hasSynced && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        #expect(informer.hasSynced)
        #expect(counted.value == 2)
        #expect(lines.value.filter { $0.hasPrefix("warning") }
            == ["warning: cannot list or watch pkis in app1; the cache may be stale until it can reason=InternalError"], "\(lines.value)")
    }
}
