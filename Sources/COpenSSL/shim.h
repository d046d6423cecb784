#ifndef CERTGATE_COPENSSL_SHIM_H
#define CERTGATE_COPENSSL_SHIM_H

// OpenSSL 3 spells many of its calls as macros, which Swift cannot import.
// Each gets a static inline wrapper here with a `certgate_` prefix; nothing else.

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/bn.h>
#include <openssl/rand.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/pkcs12.h>
#include <openssl/provider.h>

static inline int certgate_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}

static inline int certgate_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_max_proto_version(ctx, version);
}

static inline long certgate_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_mode(ctx, mode);
}

static inline void certgate_SSL_CTX_set_read_ahead(SSL_CTX *ctx, int yes) {
    SSL_CTX_set_read_ahead(ctx, yes);
}

static inline long certgate_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_session_cache_mode(ctx, mode);
}

static inline long certgate_SSL_CTX_sess_set_cache_size(SSL_CTX *ctx, long size) {
    return SSL_CTX_sess_set_cache_size(ctx, size);
}

static inline int certgate_SSL_CTX_add1_chain_cert(SSL_CTX *ctx, X509 *cert) {
    return (int)SSL_CTX_add1_chain_cert(ctx, cert);
}

static inline int certgate_SSL_CTX_set1_groups_list(SSL_CTX *ctx, const char *list) {
    return (int)SSL_CTX_set1_groups_list(ctx, list);
}

static inline int certgate_SSL_set_tlsext_host_name(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}

static inline long certgate_BIO_get_mem_data(BIO *bio, char **data) {
    return BIO_get_mem_data(bio, data);
}

static inline void certgate_OPENSSL_free(void *ptr) {
    OPENSSL_free(ptr);
}

static inline int certgate_sk_X509_NAME_num(const STACK_OF(X509_NAME) *stack) {
    return sk_X509_NAME_num(stack);
}

static inline void certgate_sk_X509_NAME_pop_free(STACK_OF(X509_NAME) *stack) {
    sk_X509_NAME_pop_free(stack, X509_NAME_free);
}

static inline STACK_OF(X509) *certgate_sk_X509_new_null(void) {
    return sk_X509_new_null();
}

static inline int certgate_sk_X509_push(STACK_OF(X509) *stack, X509 *certificate) {
    return sk_X509_push(stack, certificate);
}

// Frees the stack only: the certificates stay their owners'.
static inline void certgate_sk_X509_free(STACK_OF(X509) *stack) {
    sk_X509_free(stack);
}

// Option bits are macros built with casts (SSL_OP_BIT), which the importer skips.
static const uint64_t certgate_SSL_OP_IGNORE_UNEXPECTED_EOF = SSL_OP_IGNORE_UNEXPECTED_EOF;
static const uint64_t certgate_SSL_OP_NO_RENEGOTIATION = SSL_OP_NO_RENEGOTIATION;
static const uint64_t certgate_SSL_OP_CIPHER_SERVER_PREFERENCE = SSL_OP_CIPHER_SERVER_PREFERENCE;
static const uint64_t certgate_SSL_OP_NO_COMPRESSION = SSL_OP_NO_COMPRESSION;

static inline int certgate_sk_GENERAL_NAME_num(const GENERAL_NAMES *names) {
    return sk_GENERAL_NAME_num(names);
}

static inline GENERAL_NAME *certgate_sk_GENERAL_NAME_value(const GENERAL_NAMES *names, int index) {
    return sk_GENERAL_NAME_value(names, index);
}

/// X509V3_set_ctx_nodb is a macro that writes a struct field.
static inline void certgate_X509V3_set_ctx_nodb(X509V3_CTX *ctx) {
    X509V3_set_ctx_nodb(ctx);
}

static inline int certgate_SSL_CTX_get_ex_new_index(void) {
    return SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/// Keys a session ticket's HMAC-SHA256. OSSL_PARAM arrays are C structs built by
/// constructor functions on the stack; building them here keeps them out of Swift.
static inline int certgate_ticket_hmac_init(EVP_MAC_CTX *mac, const unsigned char *key, size_t length) {
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)key, length);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    return EVP_MAC_CTX_set_params(mac, params);
}

// PKCS#12 keystores. Building one takes stacks of certificates and safe bags, which are
// macros all the way down; the two builders below keep every stack inside one C call.

/// Certificates as a STACK_OF(X509) (each up-referenced), or NULL.
static inline STACK_OF(X509) *certgate_x509_stack(X509 **certs, int count) {
    STACK_OF(X509) *stack = sk_X509_new_null();
    if (stack == NULL) return NULL;
    for (int i = 0; i < count; i++) {
        if (!X509_up_ref(certs[i]) || !sk_X509_push(stack, certs[i])) {
            sk_X509_pop_free(stack, X509_free);
            return NULL;
        }
    }
    return stack;
}

/// A keystore: the key, the leaf and the chain (Java's PrivateKeyEntry). Modern: AES-256-CBC
/// with PBKDF2 (PBES2) and a SHA-256 MAC; legacy: 3DES for the key, RC2-40 for the
/// certificates and a SHA-1 MAC, as Java before 8u301 reads.
static inline PKCS12 *certgate_pkcs12_keystore(const char *pass, EVP_PKEY *key, X509 *leaf, X509 **chain, int count, int legacy) {
    STACK_OF(X509) *ca = certgate_x509_stack(chain, count);
    if (ca == NULL) return NULL;
    int keyCipher = legacy ? NID_pbe_WithSHA1And3_Key_TripleDES_CBC : NID_aes_256_cbc;
    int certCipher = legacy ? NID_pbe_WithSHA1And40BitRC2_CBC : NID_aes_256_cbc;
    PKCS12 *p12 = PKCS12_create_ex(pass, "certificate", key, leaf, ca, keyCipher, certCipher, PKCS12_DEFAULT_ITER, -1, 0, NULL, NULL);
    sk_X509_pop_free(ca, X509_free);
    if (p12 == NULL) return NULL;
    if (!PKCS12_set_mac(p12, pass, -1, NULL, 0, PKCS12_DEFAULT_ITER, legacy ? EVP_sha1() : EVP_sha256())) {
        PKCS12_free(p12);
        return NULL;
    }
    return p12;
}

/// A truststore: certificates only, each marked trusted for any purpose with Oracle's
/// attribute (2.16.840.1.113894.746875.1.1), without which Java's keytool sees no entry.
static inline PKCS12 *certgate_pkcs12_truststore(const char *pass, X509 **certs, int count, int legacy) {
    STACK_OF(PKCS12_SAFEBAG) *bags = NULL;
    STACK_OF(PKCS7) *safes = NULL;
    PKCS12 *p12 = NULL;
    ASN1_OBJECT *anyPurpose = OBJ_txt2obj("2.5.29.37.0", 1);
    if (anyPurpose == NULL) return NULL;
    for (int i = 0; i < count; i++) {
        PKCS12_SAFEBAG *bag = PKCS12_add_cert(&bags, certs[i]);
        if (bag == NULL) goto done;
        char name[32];
        snprintf(name, sizeof name, "ca-%d", i);
        if (!PKCS12_add_friendlyname_asc(bag, name, -1)) goto done;
        if (!PKCS12_add1_attr_by_txt(bag, "2.16.840.1.113894.746875.1.1", V_ASN1_OBJECT, (const unsigned char *)anyPurpose, -1)) goto done;
    }
    if (!PKCS12_add_safe(&safes, bags, legacy ? NID_pbe_WithSHA1And40BitRC2_CBC : NID_aes_256_cbc, PKCS12_DEFAULT_ITER, pass)) goto done;
    p12 = PKCS12_add_safes(safes, 0);
    if (p12 != NULL && !PKCS12_set_mac(p12, pass, -1, NULL, 0, PKCS12_DEFAULT_ITER, legacy ? EVP_sha1() : EVP_sha256())) {
        PKCS12_free(p12);
        p12 = NULL;
    }
done:
    ASN1_OBJECT_free(anyPurpose);
    sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
    sk_PKCS7_pop_free(safes, PKCS7_free);
    return p12;
}

/// The leaf certificate of a keystore, if `pass` opens it (its MAC checks); NULL otherwise.
static inline X509 *certgate_pkcs12_leaf(PKCS12 *p12, const char *pass) {
    EVP_PKEY *key = NULL;
    X509 *leaf = NULL;
    STACK_OF(X509) *ca = NULL;
    if (!PKCS12_verify_mac(p12, pass, -1)) return NULL;
    if (!PKCS12_parse(p12, pass, &key, &leaf, &ca)) return NULL;
    EVP_PKEY_free(key);
    sk_X509_pop_free(ca, X509_free);
    return leaf;
}

/// The NID of a keystore's MAC digest (NID_sha1 for the legacy profile), or NID_undef.
static inline int certgate_pkcs12_mac_nid(PKCS12 *p12) {
    const X509_ALGOR *algorithm = NULL;
    const ASN1_OBJECT *object = NULL;
    PKCS12_get0_mac(NULL, &algorithm, NULL, NULL, p12);
    if (algorithm == NULL) return NID_undef;
    X509_ALGOR_get0(&object, NULL, NULL, algorithm);
    return object == NULL ? NID_undef : OBJ_obj2nid(object);
}

/// A new, empty subjectAltName list.
static inline GENERAL_NAMES *certgate_general_names_new(void) {
    return sk_GENERAL_NAME_new_null();
}

/// Appends one name of `type` (GEN_DNS, GEN_URI, GEN_EMAIL: IA5String; GEN_IPADD: the
/// address bytes) to `names`; 0 on failure.
static inline int certgate_general_names_add(GENERAL_NAMES *names, int type, const unsigned char *bytes, int length) {
    ASN1_STRING *value = ASN1_STRING_type_new(type == GEN_IPADD ? V_ASN1_OCTET_STRING : V_ASN1_IA5STRING);
    GENERAL_NAME *name = GENERAL_NAME_new();
    if (value == NULL || name == NULL || !ASN1_STRING_set(value, bytes, length)) {
        ASN1_STRING_free(value);
        GENERAL_NAME_free(name);
        return 0;
    }
    GENERAL_NAME_set0_value(name, type, value);
    if (!sk_GENERAL_NAME_push(names, name)) {
        GENERAL_NAME_free(name);
        return 0;
    }
    return 1;
}

static inline void certgate_general_names_free(GENERAL_NAMES *names) {
    GENERAL_NAMES_free(names);
}

#endif

// The write side of a server TLS session. OpenSSL's records collect in this buffer instead
// of going to the socket one write(2) each; the event loop sends them together once per
// pass (a handshake's session ticket, the first answer and close_notify in one segment).
// Flush is a no-op for the same reason: the loop sends before it waits on the socket.

typedef struct {
    unsigned char *bytes;
    size_t start;     // first byte not yet sent
    size_t end;       // one past the last byte held
    size_t capacity;
} certgate_tls_output;

static inline int certgate_tls_output_write(BIO *bio, const char *data, size_t length, size_t *written) {
    certgate_tls_output *out = (certgate_tls_output *)BIO_get_data(bio);
    if (out == NULL) return 0;
    if (out->start == out->end) out->start = out->end = 0;
    if (length > out->capacity - out->end) {
        size_t held = out->end - out->start;
        if (length > SIZE_MAX / 2 - held) return 0;
        size_t needed = held + length;
        if (needed <= out->capacity && out->start > 0) {
            memmove(out->bytes, out->bytes + out->start, held);
        } else {
            size_t capacity = out->capacity > 0 ? out->capacity : 4096;
            while (capacity < needed) capacity *= 2;
            unsigned char *grown = (unsigned char *)malloc(capacity);
            if (grown == NULL) return 0;
            if (held > 0) memcpy(grown, out->bytes + out->start, held);
            free(out->bytes);
            out->bytes = grown;
            out->capacity = capacity;
        }
        out->start = 0;
        out->end = held;
    }
    memcpy(out->bytes + out->end, data, length);
    out->end += length;
    *written = length;
    return 1;
}

static inline long certgate_tls_output_ctrl(BIO *bio, int command, long number, void *pointer) {
    (void)number; (void)pointer;
    certgate_tls_output *out = (certgate_tls_output *)BIO_get_data(bio);
    switch (command) {
    case BIO_CTRL_FLUSH: return 1;
    case BIO_CTRL_WPENDING: return out == NULL ? 0 : (long)(out->end - out->start);
    case BIO_CTRL_PENDING: return 0;
    default: return 0;
    }
}

static inline int certgate_tls_output_create(BIO *bio) {
    certgate_tls_output *out = (certgate_tls_output *)calloc(1, sizeof(certgate_tls_output));
    if (out == NULL) return 0;
    BIO_set_data(bio, out);
    BIO_set_init(bio, 1);
    return 1;
}

static inline int certgate_tls_output_destroy(BIO *bio) {
    certgate_tls_output *out = (certgate_tls_output *)BIO_get_data(bio);
    if (out != NULL) {
        free(out->bytes);
        free(out);
    }
    BIO_set_data(bio, NULL);
    BIO_set_init(bio, 0);
    return 1;
}

/// The method of the collecting BIO; made once per process by the caller and kept.
static inline BIO_METHOD *certgate_tls_output_method_new(void) {
    BIO_METHOD *method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "certgate TLS output");
    if (method == NULL) return NULL;
    if (!BIO_meth_set_write_ex(method, certgate_tls_output_write) || !BIO_meth_set_ctrl(method, certgate_tls_output_ctrl)
        || !BIO_meth_set_create(method, certgate_tls_output_create) || !BIO_meth_set_destroy(method, certgate_tls_output_destroy)) {
        BIO_meth_free(method);
        return NULL;
    }
    return method;
}

/// The bytes collected and not yet sent.
static inline size_t certgate_tls_output_pending(BIO *bio, const unsigned char **bytes) {
    certgate_tls_output *out = (certgate_tls_output *)BIO_get_data(bio);
    if (out == NULL || out->start == out->end) { *bytes = NULL; return 0; }
    *bytes = out->bytes + out->start;
    return out->end - out->start;
}

/// Drops `count` sent bytes from the front. Once all is sent, a buffer grown past its first
/// 4 KiB (a large answer) is given back, so an idle connection holds at most that.
static inline void certgate_tls_output_consume(BIO *bio, size_t count) {
    certgate_tls_output *out = (certgate_tls_output *)BIO_get_data(bio);
    if (out == NULL) return;
    size_t held = out->end - out->start;
    out->start += count < held ? count : held;
    if (out->start == out->end) {
        out->start = out->end = 0;
        if (out->capacity > 4096) {
            free(out->bytes);
            out->bytes = NULL;
            out->capacity = 0;
        }
    }
}
