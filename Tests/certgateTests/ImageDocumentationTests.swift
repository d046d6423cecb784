import CertgateTestSupport
import Foundation
import Testing

/// The README's image paragraph says what the Dockerfile does: the values it marks with
/// `<!-- image-... -->` are the Dockerfile's base images, runtime packages and user.
struct ImageDocumentationTests {
    let readme: String
    let dockerfile: String

    init() throws {
        readme = try String(contentsOfFile: "\(repositoryRoot)/README.md", encoding: .utf8)
        dockerfile = try String(contentsOfFile: "\(repositoryRoot)/Dockerfile", encoding: .utf8)
    }

    /// The list of code spans right after `<!-- image-NAME -->`: "`a`", "`a` and `b`", "`a`, `b` and `c`".
    func documented(_ name: String) throws -> [String] {
        let marker = "<!-- image-\(name) -->"
        var rest = try #require(readme.range(of: marker).map { readme[$0.upperBound...] }, "the README has no \(marker)")
        var values: [String] = []
        while rest.first == "`", let close = rest.dropFirst().firstIndex(of: "`") {
            values.append(String(rest[rest.index(after: rest.startIndex)..<close]))
            rest = rest[rest.index(after: close)...]
            rest = rest.drop { ", \nand".contains($0) }
        }
        return values
    }

    /// `ARG NAME=default` of the Dockerfile.
    func argument(_ name: String) throws -> String {
        let line = try #require(dockerfile.split(separator: "\n").first { $0.hasPrefix("ARG \(name)=") })
        return String(line.dropFirst("ARG \(name)=".count))
    }

    /// The lines of the stage that starts with `FROM header`, up to the next FROM.
    func stage(_ header: String) throws -> [Substring] {
        let lines = dockerfile.split(separator: "\n")
        let start = try #require(lines.firstIndex { $0.hasPrefix("FROM \(header)") }, "no stage FROM \(header)")
        return Array(lines[(start + 1)...].prefix { !$0.hasPrefix("FROM ") })
    }

    @Test func theBaseImagesAreTheDockerfilesDefaults() throws {
        #expect(try documented("build-base") == [try argument("SWIFT_IMAGE")])
        #expect(try documented("runtime-base") == [try argument("RUNTIME_IMAGE")])
    }

    @Test func theRuntimePackagesAreWhatTheRuntimeStageInstalls() throws {
        let run = try stage("${RUNTIME_IMAGE} AS runtime").joined(separator: " ").replacingOccurrences(of: "\\", with: " ")
        let install = try #require(run.range(of: "apt-get install"), "the runtime stage installs nothing with apt-get")
        let words = run[install.upperBound...].prefix { $0 != "&" }.split(separator: " ").map(String.init)
        let packages = words.filter { !$0.hasPrefix("-") }
        let readmePackages = try documented("runtime-packages")
        #expect(Set(readmePackages) == Set(packages), "README: \(readmePackages), Dockerfile: \(packages)")
    }

    @Test func theUserIsTheChartsRunAsUser() throws {
        let user = try #require(try stage("${RUNTIME_IMAGE} AS runtime").first { $0.hasPrefix("USER ") })
        let uid = try #require(try documented("user").first)
        #expect(user == "USER \(uid):\(uid)")
        let deployment = try String(contentsOfFile: "\(repositoryRoot)/charts/certgate/templates/deployment.yaml", encoding: .utf8)
        #expect(deployment.contains("runAsUser: \(uid)"))
    }

    @Test func bothTargetsShipTheBinaryOnTheRuntimeStage() throws {
        #expect(try stage("runtime AS prebuilt").contains { $0.hasPrefix("COPY") && $0.hasSuffix("certgate /usr/local/bin/certgate") })
        let lines = dockerfile.split(separator: "\n")
        let last = try #require(lines.lastIndex { $0.hasPrefix("FROM ") })
        #expect(lines[last] == "FROM runtime", "the default target is the runtime stage")
        #expect(lines[(last + 1)...].contains("COPY --from=build /out/certgate /usr/local/bin/certgate"))
    }
}
