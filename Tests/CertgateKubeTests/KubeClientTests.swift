import CertgateCrypto
import CertgateHTTP
import CertgateKube
import CertgatePKI
import CertgateTLS
import CertgateTestSupport
import Foundation
import Testing

/// A client for `server` authenticating with the token file `tokenFile`.
func kubeClient(_ server: LoopbackServer, _ pki: TestPKI, tokenFile: String) throws -> KubeClient {
    let ca = try Certificate.chain(pem: Array(try Data(contentsOf: URL(fileURLWithPath: pki.caFile))))
    let configuration = ClusterConfiguration(host: "127.0.0.1", port: server.port, tls: TLSClientConfiguration(trustRoots: ca),
                                             token: TokenSource(file: tokenFile), source: "test")
    return try KubeClient(configuration: configuration)
}

func recorded(_ name: String, status: Int) throws -> HTTPResponse {
    .json(status, Array(try recordedBody(name)))
}

@Suite struct KubeClientTests {
    @Test func getsListsAndMapsErrorsAsTheAPIServerSendsThem() throws {
        let directory = TemporaryDirectory()
        let pki = try TestPKI(in: directory)
        try "token-1".write(toFile: directory.file("token"), atomically: true, encoding: .utf8)
        let log = RequestLog()
        var router = Router()
        let pkis = "/apis/certgate.dev/v1/namespaces/app1/pkis"
        let get200 = try recorded("get-200.http", status: 200)
        let get404 = try recorded("get-404.http", status: 404)
        let conflict = try recorded("update-409-conflict.http", status: 409)
        let page = try recorded("list-pkis-limit1.http", status: 200)
        router.add("GET", "\(pkis)/app1-pki") { log.record($0); return get200 }
        router.add("PUT", "\(pkis)/app1-pki") { log.record($0); return conflict }
        router.add("GET", "\(pkis)/missing") { log.record($0); return get404 }
        router.add("GET", pkis) { log.record($0); return page }
        let server = try LoopbackServer(pki: pki, router: router)
        defer { server.stop() }
        let client = try kubeClient(server, pki, tokenFile: directory.file("token"))

        let pki1 = try client.get(.pkis, namespace: "app1", name: "app1-pki", as: Pki.self)
        #expect(pki1.spec.serviceName == "app1")
        #expect(log.all.last?.headers["authorization"] == "Bearer token-1")
        #expect(log.all.last?.headers["accept"] == "application/json")

        #expect { try client.get(.pkis, namespace: "app1", name: "missing", as: Pki.self) } throws: { error in
            (error as? APIStatus)?.isNotFound == true && "\(error)" == "404 NotFound: pkis.certgate.dev \"missing\" not found"
        }
        #expect { try client.update(.pkis, namespace: "app1", name: "app1-pki", pki1) } throws: { ($0 as? APIStatus)?.isConflict == true }
        let put = log.all.last!
        #expect(put.headers["content-type"] == "application/json")
        #expect(try JSONDecoder().decode(Pki.self, from: Data(put.body)).metadata.name == "app1-pki")

        let list = try client.list(.pkis, namespace: "app1", options: ListOptions(labelSelector: "app=app1,tier in (a b)",
                                                                                  fieldSelector: "metadata.name=app1-pki", limit: 1),
                                   of: Pki.self)
        #expect(list.items.count == 1)
        #expect(log.all.last?.query == "labelSelector=app%3Dapp1%2Ctier%20in%20%28a%20b%29&fieldSelector=metadata.name%3Dapp1-pki&limit=1")
    }

    @Test func writesWithTheRightVerbsPathsAndContentTypes() throws {
        let directory = TemporaryDirectory()
        let pki = try TestPKI(in: directory)
        try "t".write(toFile: directory.file("token"), atomically: true, encoding: .utf8)
        let log = RequestLog()
        var router = Router()
        let secret = Secret(metadata: ObjectMeta(name: "app1-tls", namespace: "app1"), type: "kubernetes.io/tls", data: ["tls.crt": [1, 2, 3]])
        let secretJSON = try JSONEncoder().encode(secret)
        router.add("POST", "/api/v1/namespaces/app1/secrets") { log.record($0); return .json(201, Array(secretJSON)) }
        router.add("DELETE", "/api/v1/namespaces/app1/secrets/app1-tls") { log.record($0); return .json(200, Array(#"{"kind":"Status","status":"Success","code":200}"#.utf8)) }
        let getPki = try recorded("get-200.http", status: 200)
        router.add("PATCH", "/apis/certgate.dev/v1/namespaces/app1/pkis/app1-pki/status") { log.record($0); return getPki }
        router.add("PATCH", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/certgate") { log.record($0); return .json(200, Array(#"{"metadata":{"name":"certgate"}}"#.utf8)) }
        let server = try LoopbackServer(pki: pki, router: router)
        defer { server.stop() }
        let client = try kubeClient(server, pki, tokenFile: directory.file("token"))

        #expect(try client.create(.secrets, namespace: "app1", secret).bytes("tls.crt") == [1, 2, 3])
        #expect(log.all.last?.method == "POST")
        _ = try client.mergePatch(.pkis, namespace: "app1", name: "app1-pki", subresource: "status",
                                  patch: Array(#"{"status":{"secretName":"app1-tls"}}"#.utf8), as: Pki.self)
        #expect(log.all.last?.headers["content-type"] == "application/merge-patch+json")
        _ = try client.mergePatch(.validatingWebhookConfigurations, namespace: "ignored", name: "certgate",
                                  patch: Array("{}".utf8), as: ValidatingWebhookConfiguration.self)
        #expect(log.all.last?.path == "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/certgate")
        try client.delete(.secrets, namespace: "app1", name: "app1-tls")
        #expect(log.all.last?.method == "DELETE")
    }

    @Test func aRejectedTokenIsReadAgainOnce() throws {
        let directory = TemporaryDirectory()
        let pki = try TestPKI(in: directory)
        let tokenFile = directory.file("token")
        try "old-token".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let log = RequestLog()
        var router = Router()
        let body = try recorded("get-200.http", status: 200)
        router.add("GET", "/apis/certgate.dev/v1/namespaces/app1/pkis/app1-pki") { request in
            log.record(request)
            return request.headers["authorization"] == "Bearer new-token" ? body
                : .json(401, Array(#"{"kind":"Status","status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#.utf8))
        }
        let server = try LoopbackServer(pki: pki, router: router)
        defer { server.stop() }
        let client = try kubeClient(server, pki, tokenFile: tokenFile)
        #expect { try client.get(.pkis, namespace: "app1", name: "app1-pki", as: Pki.self) } throws: { ($0 as? APIStatus)?.code == 401 }
        #expect(log.all.count == 2, "one retry with the token read again")
        try "new-token".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        #expect(try client.get(.pkis, namespace: "app1", name: "app1-pki", as: Pki.self).metadata.name == "app1-pki")
        #expect(log.all.map { $0.headers["authorization"] ?? "" } == ["Bearer old-token", "Bearer old-token", "Bearer old-token", "Bearer new-token"])
    }

    @Test func watchesDecodeEventsAsTheyArriveAndReport410() throws {
        let directory = TemporaryDirectory()
        let pki = try TestPKI(in: directory)
        try "t".write(toFile: directory.file("token"), atomically: true, encoding: .utf8)
        let log = RequestLog()
        var router = Router()
        let stream = Array(try Data(contentsOf: URL(fileURLWithPath: "\(recordings)/watch-pkis.jsonl")))
        let gone = try recorded("list-410-exact.http", status: 410)
        router.add("GET", "/apis/certgate.dev/v1/namespaces/app1/pkis") { request in
            log.record(request)
            return request.queryValue("resourceVersion") == "1" ? gone : .json(200, stream)
        }
        let server = try LoopbackServer(pki: pki, router: router)
        defer { server.stop() }
        let client = try kubeClient(server, pki, tokenFile: directory.file("token"))

        var seen: [String] = []
        try client.watch(.pkis, namespace: "app1", options: ListOptions(resourceVersion: "325"), of: Pki.self) { event in
            switch event {
            case .added: seen.append("ADDED")
            case .modified: seen.append("MODIFIED")
            case .deleted: seen.append("DELETED")
            case .bookmark: seen.append("BOOKMARK")
            case .error: seen.append("ERROR")
            }
            return true
        }
        #expect(seen.count == 5 && seen.first == "ADDED")
        #expect(log.all.last?.query == "resourceVersion=325&watch=true&allowWatchBookmarks=true&timeoutSeconds=300")

        var stoppedAfter = 0
        try client.watch(.pkis, namespace: "app1", of: Pki.self) { _ in
            stoppedAfter += 1
            return false
        }
        #expect(stoppedAfter == 1, "returning false stops the watch")

        #expect { try client.watch(.pkis, namespace: "app1", options: ListOptions(resourceVersion: "1"), of: Pki.self) { _ in true } }
            throws: { ($0 as? APIStatus)?.isGone == true }
    }

    @Test func pathsForCoreGroupAndClusterScopedResources() {
        #expect(Resource.secrets.path(namespace: "app1", name: "app1-tls") == "/api/v1/namespaces/app1/secrets/app1-tls")
        #expect(Resource.pkis.path(namespace: "app1", name: "a", subresource: "status") == "/apis/certgate.dev/v1/namespaces/app1/pkis/a/status")
        #expect(Resource.leases.path(namespace: nil) == "/apis/coordination.k8s.io/v1/leases")
        #expect(Resource.validatingWebhookConfigurations.path(namespace: "x", name: "certgate")
                == "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/certgate")
    }
}
