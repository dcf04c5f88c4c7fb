// Key pairs for the crypto tests and benches, made with libcrypto's C API (fresh for every run:
// no key material is checked in), with their PEM forms.
#pragma once

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <string>

namespace turnpike::lua::test {

struct KeyPair {
  std::string public_pem;
  std::string private_pem;
  EVP_PKEY* pkey = nullptr;
};

inline std::string bio_string(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string s(data, static_cast<size_t>(len));
  BIO_free(bio);
  return s;
}

inline KeyPair make_key(EVP_PKEY* pkey) {
  KeyPair k;
  k.pkey = pkey;
  BIO* pub = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(pub, pkey);
  k.public_pem = bio_string(pub);
  BIO* priv = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(priv, pkey, nullptr, nullptr, 0, nullptr, nullptr);
  k.private_pem = bio_string(priv);
  return k;
}

}  // namespace turnpike::lua::test
