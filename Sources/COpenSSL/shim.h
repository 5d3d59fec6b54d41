// The system's OpenSSL 3 (libssl-dev), for the peer transport's TLS. OpenSSL spells several of
// the calls Tally needs as macros, which Swift cannot call: they are wrapped here as functions.
#ifndef TALLY_COPENSSL_SHIM_H
#define TALLY_COPENSSL_SHIM_H

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

/// TLS 1.3 and nothing else.
static inline int tally_ssl_ctx_tls13_only(SSL_CTX *ctx) {
    return SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) == 1
        && SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) == 1;
}

/// Partial writes allowed, and the buffer may move between retries (Swift arrays do).
static inline void tally_ssl_ctx_set_modes(SSL_CTX *ctx) {
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
}

static inline int tally_ssl_set_app_data(SSL *ssl, void *data) { return SSL_set_ex_data(ssl, 0, data); }
static inline void *tally_ssl_get_app_data(const SSL *ssl) { return SSL_get_ex_data(ssl, 0); }

/// The SSL a certificate-verification callback runs for.
static inline SSL *tally_ssl_of_store_ctx(X509_STORE_CTX *store) {
    return (SSL *)X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
}

static inline size_t tally_bio_pending(BIO *bio) { return BIO_ctrl_pending(bio); }

/// A certificate's DER length (or -1).
static inline int tally_x509_der_length(X509 *certificate) {
    int length = i2d_X509(certificate, NULL);
    return length > 0 ? length : -1;
}

/// A certificate in DER: writes up to `capacity` bytes to `out`, returns the length (or -1).
static inline int tally_x509_der(X509 *certificate, unsigned char *out, int capacity) {
    int length = i2d_X509(certificate, NULL);
    if (length <= 0 || length > capacity) return -1;
    unsigned char *cursor = out;
    return i2d_X509(certificate, &cursor);
}

#endif
