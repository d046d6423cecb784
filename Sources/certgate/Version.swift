/// Which Certgate this is. `release` is the chart's appVersion (a test holds the two
/// together), so the image a chart installs says the same version it was released as.
enum Version {
    static let release = "0.1.0"

    /// What `certgate version` and `--version` print.
    static let text = "certgate \(release)"

    /// Sent to the API server, shaped as client-go shapes its own ("kubectl/v1.28.7
    /// (linux/amd64) kubernetes/..."): audit logs show which release is calling, and
    /// managedFields still name the writer "certgate" (the part before the "/").
    static let userAgent = "certgate/\(release) (linux/\(architecture))"

    /// The architecture as Go and container images name it.
    private static var architecture: String {
        #if arch(x86_64)
        return "amd64"
        #elseif arch(arm64)
        return "arm64"
        #else
        return "unknown"
        #endif
    }
}
