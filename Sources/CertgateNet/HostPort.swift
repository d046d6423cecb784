/// A host and port as URLs and flags write them: `host:port`, `[v6]:port`, or the host
/// alone where a default port applies. The one reader of that syntax in Certgate (flags,
/// kubeconfig server URLs, the webhook URL) and its one writer (brackets around an IPv6
/// host, in Host headers and addresses shown).
public struct HostPort: Sendable, Equatable, CustomStringConvertible {
    /// Without brackets: `::1`, `127.0.0.1`, `example.com`.
    public let host: String
    public let port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Reads `host:port` or `[v6]:port`; a host alone takes `defaultPort`, and is refused
    /// when there is none. An IPv6 address without brackets is refused: its last group
    /// cannot be told from a port.
    public init?(_ authority: Substring, defaultPort: UInt16? = nil) {
        let hostPart: Substring
        let portPart: Substring
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            hostPart = authority[authority.index(after: authority.startIndex)..<close]
            portPart = authority[authority.index(after: close)...]
        } else if let colon = authority.firstIndex(of: ":") {
            hostPart = authority[..<colon]
            portPart = authority[colon...]
        } else {
            hostPart = authority
            portPart = ""
        }
        guard !hostPart.isEmpty else { return nil }
        if portPart.isEmpty {
            guard let defaultPort else { return nil }
            port = defaultPort
        } else {
            guard portPart.hasPrefix(":"), let port = UInt16(portPart.dropFirst()) else { return nil }
            self.port = port
        }
        host = String(hostPart)
    }

    public init?(_ authority: String, defaultPort: UInt16? = nil) {
        self.init(Substring(authority), defaultPort: defaultPort)
    }

    /// The host and port of an `https://` URL, 443 when it names none; nil for another
    /// scheme or an authority that does not read.
    public init?(httpsURL url: String) {
        guard url.hasPrefix("https://") else { return nil }
        let authority = url.dropFirst("https://".count).prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        self.init(authority, defaultPort: 443)
    }

    /// The host as a URL or a Host header writes it: in brackets when it is IPv6.
    public var bracketedHost: String { host.contains(":") ? "[\(host)]" : host }

    public var description: String { "\(bracketedHost):\(port)" }
}
