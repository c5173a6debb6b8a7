#include "net/tls/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <fstream>

#include <boost/asio/ip/address.hpp>
#include <fmt/format.h>

namespace rpool::net {

namespace ssl = boost::asio::ssl;

namespace {

// OpenSSL's own reason for the last failure, e.g. "key values mismatch".
std::string openssl_reason(const boost::system::error_code& ec) {
  std::string reason = ec.message();
  ERR_clear_error();
  return reason;
}

bool readable(const std::string& path) { return std::ifstream(path, std::ios::binary).good(); }

}  // namespace

std::shared_ptr<ssl::context> make_tls_context(const TlsFiles& files, std::string& error) {
  for (const auto& [what, path] :
       {std::pair{"tls.ca", &files.ca}, std::pair{"tls.cert", &files.cert},
        std::pair{"tls.key", &files.key}}) {
    if (!readable(*path)) {
      error = fmt::format("{}: cannot read {}", what, *path);
      return nullptr;
    }
  }
  auto context = std::make_shared<ssl::context>(ssl::context::tls);
  SSL_CTX* native = context->native_handle();
  if (SSL_CTX_set_min_proto_version(native, TLS1_3_VERSION) != 1) {
    error = "tls: this OpenSSL cannot speak TLS 1.3";
    return nullptr;
  }
  // No tickets (see the header), no renegotiation, no compression.
  SSL_CTX_set_num_tickets(native, 0);
  context->set_options(ssl::context::no_compression | SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION |
                       SSL_OP_CIPHER_SERVER_PREFERENCE);
  // AES-128-GCM first (every TLS 1.3 peer supports it): the same security margin in practice as
  // AES-256 here, at about two thirds of its cost per byte, which every request and frame pays.
  if (SSL_CTX_set_ciphersuites(
          native, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384") !=
      1) {
    ERR_clear_error();
    error = "tls: this OpenSSL lacks the TLS 1.3 AES-GCM cipher suites";
    return nullptr;
  }
  SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);
  boost::system::error_code ec;
  context->load_verify_file(files.ca, ec);
  if (ec) {
    error =
        fmt::format("tls.ca: {} holds no usable CA certificate: {}", files.ca, openssl_reason(ec));
    return nullptr;
  }
  context->use_certificate_chain_file(files.cert, ec);
  if (ec) {
    error =
        fmt::format("tls.cert: {} is not a PEM certificate: {}", files.cert, openssl_reason(ec));
    return nullptr;
  }
  context->use_private_key_file(files.key, ssl::context::pem, ec);
  if (ec) {
    error = fmt::format("tls.key: {} is not a PEM private key: {}", files.key, openssl_reason(ec));
    return nullptr;
  }
  if (SSL_CTX_check_private_key(native) != 1) {
    ERR_clear_error();
    error = fmt::format("tls.key: {} does not match the certificate in {}", files.key, files.cert);
    return nullptr;
  }
  // The accepting side asks for a certificate and fails the handshake without a valid one; the
  // connecting side verifies the server's chain (its name is checked by the caller).
  context->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  return context;
}

bool certificate_covers(const void* cert_in, std::string_view host_in) {
  if (cert_in == nullptr || host_in.empty()) return false;
  X509* cert = const_cast<X509*>(static_cast<const X509*>(cert_in));
  const std::string host(host_in);
  boost::system::error_code ec;
  (void)boost::asio::ip::make_address(host, ec);
  if (!ec) return X509_check_ip_asc(cert, host.c_str(), 0) == 1;
  // Only subjectAltName dNSName entries: never fall back to the subject's common name.
  return X509_check_host(cert, host.data(), host.size(), X509_CHECK_FLAG_NEVER_CHECK_SUBJECT,
                         nullptr) == 1;
}

bool own_certificate_covers(ssl::context& context, std::string_view host) {
  return certificate_covers(SSL_CTX_get0_certificate(context.native_handle()), host);
}

}  // namespace rpool::net
