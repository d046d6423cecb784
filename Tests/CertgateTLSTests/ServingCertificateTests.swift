import CertgateLocking
import CertgateCrypto
import CertgateTLS
import CertgateTestSupport
import Foundation
import Synchronization
import Testing

@Suite struct ServingCertificateTests {
    @Test func aKeyThatDoesNotMatchIsRefusedByName() throws {
        let directory = TemporaryDirectory()
        let pki = try TestPKI(in: directory)
        let chain = try Certificate.chain(pem: Array(try String(contentsOfFile: pki.certificateFile, encoding: .utf8).utf8))
        #expect {
            try TLSContext(server: TLSServerConfiguration(certificateChain: chain, privateKey: try PrivateKey.generate(.ecdsaP256)))
        } throws: { error in
            "\(error)".contains("private key")
        }
    }

    @Test func reloadsOnASymlinkSwapAndKeepsTheLastGoodPairOnABrokenOne() throws {
        // Kubernetes mounts a Secret as tls.crt -> ..data/tls.crt, ..data -> ..2026_11_21_...;
        // an update writes a new timestamped directory and swaps the ..data symlink.
        let directory = TemporaryDirectory()
        let pki = try TestPKI(in: directory)
        let mount = directory.file("mount")
        try FileManager.default.createDirectory(atPath: mount + "/..v1", withIntermediateDirectories: true)
        let firstSerial = try pki.writeServingPair(certificateFile: mount + "/..v1/tls.crt", keyFile: mount + "/..v1/tls.key")
        try FileManager.default.createSymbolicLink(atPath: mount + "/..data", withDestinationPath: "..v1")
        try FileManager.default.createSymbolicLink(atPath: mount + "/tls.crt", withDestinationPath: "..data/tls.crt")
        try FileManager.default.createSymbolicLink(atPath: mount + "/tls.key", withDestinationPath: "..data/tls.key")

        let events = Locked<[String]>([])
        let serving = ServingCertificate(files: ServingCertificateFiles(certificateFile: mount + "/tls.crt", keyFile: mount + "/tls.key")) { event in
            switch event {
            case .loaded(let context): events.withLock { $0.append("loaded \(context.leaf.serialNumberHex)") }
            case .rejected(let error): events.withLock { $0.append("rejected \(error)") }
            }
        }
        #expect(serving.reload() == nil)
        #expect(serving.context?.leaf.serialNumberHex == firstSerial)
        #expect(serving.reload() == nil, "unchanged files are not reloaded")
        #expect(events.withLock { $0 } == ["loaded \(firstSerial)"])

        // Swap in a new pair the way the kubelet does.
        try FileManager.default.createDirectory(atPath: mount + "/..v2", withIntermediateDirectories: true)
        let secondSerial = try pki.writeServingPair(certificateFile: mount + "/..v2/tls.crt", keyFile: mount + "/..v2/tls.key")
        try FileManager.default.createSymbolicLink(atPath: mount + "/..data_tmp", withDestinationPath: "..v2")
        #expect(rename(mount + "/..data_tmp", mount + "/..data") == 0)
        #expect(serving.reload() == nil)
        #expect(serving.context?.leaf.serialNumberHex == secondSerial)

        // A broken pair: the certificate of one key with another key.
        try FileManager.default.createDirectory(atPath: mount + "/..v3", withIntermediateDirectories: true)
        try pki.writeServingPair(certificateFile: mount + "/..v3/tls.crt", keyFile: mount + "/..v3/unused.key")
        try FileManager.default.copyItem(atPath: mount + "/..v1/tls.key", toPath: mount + "/..v3/tls.key")
        try FileManager.default.createSymbolicLink(atPath: mount + "/..data_tmp", withDestinationPath: "..v3")
        #expect(rename(mount + "/..data_tmp", mount + "/..data") == 0)
        let error = serving.reload()
        #expect(error != nil)
        #expect("\(error!)" == "the private key in \(mount)/tls.key does not match the certificate in \(mount)/tls.crt (were they written at different times?)")
        #expect(serving.context?.leaf.serialNumberHex == secondSerial, "the last good pair stays in use")
        #expect(serving.reload() == nil, "the same broken content is reported once")
        #expect(events.withLock { $0 }.count == 3)
    }

    @Test func missingFilesAreNamed() throws {
        let serving = ServingCertificate(files: ServingCertificateFiles(certificateFile: "/nonexistent/tls.crt", keyFile: "/nonexistent/tls.key"))
        let error = serving.reload()
        #expect("\(error!)" == "cannot read the serving certificate file /nonexistent/tls.crt: it does not exist or is not readable")
        #expect(serving.context == nil)
    }
}
