import CertgateLocking
import Synchronization

/// A set of metric families rendered in the Prometheus text format (version 0.0.4).
///
/// Families are registered once at start-up; children (one per label-value combination) are
/// made on first use and can be kept by hot paths to skip the lookup.
public final class MetricsRegistry: Sendable {
    private let families = Locked<[any MetricFamily]>([])

    public init() {}

    public func counter(_ name: String, help: String, labels: [String] = []) -> Counter {
        register(Counter(name: name, help: help, labelNames: labels))
    }

    public func gauge(_ name: String, help: String, labels: [String] = []) -> Gauge {
        register(Gauge(name: name, help: help, labelNames: labels))
    }

    /// A gauge whose values are computed when scraped (queue depth, time until an expiry):
    /// `values` returns label values and the number for each.
    public func computedGauge(_ name: String, help: String, labels: [String] = [],
                              values: @escaping @Sendable () -> [([String], Double)]) {
        _ = register(ComputedGauge(name: name, help: help, labelNames: labels, values: values))
    }

    public func histogram(_ name: String, help: String, labels: [String] = [], buckets: [Double]) -> Histogram {
        register(Histogram(name: name, help: help, labelNames: labels, buckets: buckets))
    }

    private func register<F: MetricFamily>(_ family: F) -> F {
        families.withLock { $0.append(family) }
        return family
    }

    /// Every family in registration order, in the text exposition format.
    public func exposition() -> String {
        var out = ""
        for family in families.withLock({ $0 }) {
            out += "# HELP \(family.name) \(escapeHelp(family.help))\n# TYPE \(family.name) \(family.type)\n"
            family.render(into: &out)
        }
        return out
    }
}

protocol MetricFamily: Sendable {
    var name: String { get }
    var help: String { get }
    var type: String { get }
    func render(into out: inout String)
}

/// Children of a family, one per label-value combination, created on first use.
final class Children<Child: AnyObject & Sendable>: Sendable {
    let labelNames: [String]
    private let storage = Locked<[[String]: Child]>([:])
    private let make: @Sendable () -> Child

    init(labelNames: [String], make: @escaping @Sendable () -> Child) {
        self.labelNames = labelNames
        self.make = make
    }

    func child(_ values: [String]) -> Child {
        precondition(values.count == labelNames.count, "expected labels \(labelNames), got \(values)")
        return storage.withLock { children in
            if let existing = children[values] { return existing }
            let created = make()
            children[values] = created
            return created
        }
    }

    /// Children sorted by label values, so output is stable.
    func sorted() -> [([String], Child)] {
        storage.withLock { $0.map { ($0.key, $0.value) } }.sorted { $0.0.lexicographicallyPrecedes($1.0) }
    }

    func labelText(_ values: [String], extra: String? = nil) -> String {
        var parts = zip(labelNames, values).map { "\($0)=\"\(escapeLabel($1))\"" }
        if let extra { parts.append(extra) }
        return parts.isEmpty ? "" : "{" + parts.joined(separator: ",") + "}"
    }
}

/// One number per label-value combination: the shared body of counters and gauges.
public class ValueFamily: MetricFamily, @unchecked Sendable {
    // @unchecked: every stored property is immutable or Sendable; subclasses add none.
    public final class Child: Sendable {
        private let value = Locked<Double>(0)
        fileprivate func update(_ body: (inout Double) -> Void) { value.withLock { body(&$0) } }
        public var current: Double { value.withLock { $0 } }
    }

    let name: String
    let help: String
    let type: String
    let children: Children<Child>

    init(name: String, help: String, labelNames: [String], type: String) {
        self.name = name
        self.help = help
        self.type = type
        children = Children(labelNames: labelNames) { Child() }
        // A family without labels shows 0 before its first change, as client libraries do.
        if labelNames.isEmpty { _ = children.child([]) }
    }

    func render(into out: inout String) {
        for (values, child) in children.sorted() {
            out += "\(name)\(children.labelText(values)) \(formatValue(child.current))\n"
        }
    }
}

/// A value that only goes up (requests served, handshakes failed).
public final class Counter: ValueFamily, @unchecked Sendable {
    init(name: String, help: String, labelNames: [String]) {
        super.init(name: name, help: help, labelNames: labelNames, type: "counter")
    }

    public func labels(_ values: String...) -> Child { children.child(values) }
    public func increment(by amount: Double = 1) { children.child([]).increment(by: amount) }
}

/// A value that goes up and down (open connections) or is set (certificate expiry).
public final class Gauge: ValueFamily, @unchecked Sendable {
    init(name: String, help: String, labelNames: [String]) {
        super.init(name: name, help: help, labelNames: labelNames, type: "gauge")
    }

    public func labels(_ values: String...) -> Child { children.child(values) }
    public func set(_ value: Double) { children.child([]).set(value) }
    public func add(_ amount: Double) { children.child([]).add(amount) }
    public var current: Double { children.child([]).current }
}

extension ValueFamily.Child {
    /// For counters: only non-negative amounts make sense.
    public func increment(by amount: Double = 1) { update { $0 += amount } }
    /// For gauges.
    public func set(_ newValue: Double) { update { $0 = newValue } }
    public func add(_ amount: Double) { update { $0 += amount } }
}

/// A gauge computed at scrape time.
final class ComputedGauge: MetricFamily {
    let name: String
    let help: String
    let type = "gauge"
    private let labelNames: [String]
    private let values: @Sendable () -> [([String], Double)]

    init(name: String, help: String, labelNames: [String], values: @escaping @Sendable () -> [([String], Double)]) {
        self.name = name
        self.help = help
        self.labelNames = labelNames
        self.values = values
    }

    func render(into out: inout String) {
        for (labelValues, value) in values().sorted(by: { $0.0.lexicographicallyPrecedes($1.0) }) {
            let labels = zip(labelNames, labelValues).map { "\($0)=\"\(escapeLabel($1))\"" }.joined(separator: ",")
            out += "\(name)\(labels.isEmpty ? "" : "{\(labels)}") \(formatValue(value))\n"
        }
    }
}

/// Observations counted into cumulative buckets (request latency).
public final class Histogram: MetricFamily {
    public final class Child: Sendable {
        struct State { var counts: [UInt64]; var sum: Double = 0; var count: UInt64 = 0 }
        let upperBounds: [Double]
        let state: Locked<State>

        init(upperBounds: [Double]) {
            self.upperBounds = upperBounds
            state = Locked(State(counts: [UInt64](repeating: 0, count: upperBounds.count)))
        }

        public func observe(_ value: Double) {
            let index = upperBounds.firstIndex { value <= $0 }
            state.withLock { state in
                if let index { state.counts[index] += 1 }
                state.sum += value
                state.count += 1
            }
        }
    }

    let name: String
    let help: String
    let type = "histogram"
    let buckets: [Double]
    private let children: Children<Child>

    init(name: String, help: String, labelNames: [String], buckets: [Double]) {
        self.name = name
        self.help = help
        self.buckets = buckets.sorted()
        let bounds = self.buckets
        children = Children(labelNames: labelNames) { Child(upperBounds: bounds) }
    }

    public func labels(_ values: String...) -> Child { children.child(values) }

    func render(into out: inout String) {
        for (values, child) in children.sorted() {
            let state = child.state.withLock { $0 }
            var cumulative: UInt64 = 0
            for (bound, count) in zip(buckets, state.counts) {
                cumulative += count
                out += "\(name)_bucket\(children.labelText(values, extra: "le=\"\(formatValue(bound))\"")) \(cumulative)\n"
            }
            out += "\(name)_bucket\(children.labelText(values, extra: "le=\"+Inf\"")) \(state.count)\n"
            out += "\(name)_sum\(children.labelText(values)) \(formatValue(state.sum))\n"
            out += "\(name)_count\(children.labelText(values)) \(state.count)\n"
        }
    }
}

/// Prometheus' default latency buckets, in seconds, with finer steps below 5 ms where a
/// webhook answer should land.
public let latencyBuckets: [Double] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

func formatValue(_ value: Double) -> String {
    if value.isNaN { return "NaN" }
    if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
    if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
    return "\(value)"
}

/// Label values escape backslash, double quote and newline; HELP text only the first and last.
func escapeLabel(_ value: String) -> String { escape(value, quotes: true) }

func escapeHelp(_ value: String) -> String { escape(value, quotes: false) }

private func escape(_ value: String, quotes: Bool) -> String {
    var out = ""
    for ch in value {
        switch ch {
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\"" where quotes: out += "\\\""
        default: out.append(ch)
        }
    }
    return out
}
