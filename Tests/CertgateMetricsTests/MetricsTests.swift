import CertgateMetrics
import Testing

@Suite struct ExpositionTests {
    @Test func countersAndGaugesRenderWithHelpTypeAndEscapedLabels() {
        let registry = MetricsRegistry()
        let requests = registry.counter("demo_requests_total", help: "Requests.\nSecond line", labels: ["path", "code"])
        requests.labels("/validate", "200").increment()
        requests.labels("/validate", "200").increment(by: 2)
        requests.labels("a\"b\\c\nd", "404").increment()
        let open = registry.gauge("demo_open", help: "Open things.")
        open.add(3)
        open.add(-1)
        let text = registry.exposition()
        #expect(text.contains("# HELP demo_requests_total Requests.\\nSecond line\n# TYPE demo_requests_total counter\n"))
        #expect(text.contains("demo_requests_total{path=\"/validate\",code=\"200\"} 3\n"))
        #expect(text.contains("demo_requests_total{path=\"a\\\"b\\\\c\\nd\",code=\"404\"} 1\n"))
        #expect(text.contains("# TYPE demo_open gauge\ndemo_open 2\n"))
    }

    @Test func histogramBucketsAreCumulativeWithSumAndCount() {
        let registry = MetricsRegistry()
        let latency = registry.histogram("demo_seconds", help: "Latency.", labels: ["path"], buckets: [0.1, 1])
        let child = latency.labels("/x")
        child.observe(0.05)
        child.observe(0.5)
        child.observe(5)
        let text = registry.exposition()
        #expect(text.contains("demo_seconds_bucket{path=\"/x\",le=\"0.1\"} 1\n"))
        #expect(text.contains("demo_seconds_bucket{path=\"/x\",le=\"1\"} 2\n"))
        #expect(text.contains("demo_seconds_bucket{path=\"/x\",le=\"+Inf\"} 3\n"))
        #expect(text.contains("demo_seconds_sum{path=\"/x\"} 5.55\n"))
        #expect(text.contains("demo_seconds_count{path=\"/x\"} 3\n"))
    }
}
