// TLS for both transports: one OpenSSL context per node, built from the config's `tls` files, used
// as the server and as the client side of every connection (peer and HTTP).
//
// The context speaks TLS 1.3 only, presents the node's certificate, trusts only the configured CA
// (not the system's), and requires a certificate from the other side on every connection it
// accepts, so a peer or client without one fails the handshake. It issues no session tickets: a
// ticket is bytes the server writes after the handshake, and the peer protocol's receivers never
// write (and a resumed session would skip the certificate checks below).
//
// Which certificate is accepted from WHOM is not decided here: the HTTP client checks the
// server's name with host_name_verification, and the peer transport checks the certificate of an
// accepted connection against the member id it claims (certificate_covers).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/ssl/context.hpp>

namespace rpool::net {

struct TlsFiles {
  std::string ca;    // PEM: the CA certificate(s) that peer and client certificates chain to
  std::string cert;  // PEM: this node's certificate, optionally followed by intermediates
  std::string key;   // PEM: its private key
};

// Loads the files into a new context. On failure returns null and sets `error` to one line that
// names the file and why (missing, not PEM, the key does not match the certificate).
std::shared_ptr<boost::asio::ssl::context> make_tls_context(const TlsFiles& files,
                                                            std::string& error);

// Whether `cert` (an X509*) has a subjectAltName that covers `host`: an iPAddress entry when host
// is an IP literal, else a dNSName entry (wildcards as RFC 6125). The subject's CN is never used.
bool certificate_covers(const void* cert, std::string_view host);

// Whether the certificate that `context` presents covers `host` (config checks at start).
bool own_certificate_covers(boost::asio::ssl::context& context, std::string_view host);

}  // namespace rpool::net
