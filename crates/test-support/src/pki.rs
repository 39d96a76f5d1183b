//! A test certificate authority and a server certificate it signed for
//! 127.0.0.1 (rcgen), for the tests of TLS listeners.

/// The CA's certificate (PEM and DER), and the server's certificate and
/// private key (PEM).
pub struct TestPki {
    pub ca_pem: String,
    pub ca_der: Vec<u8>,
    pub cert: String,
    pub key: String,
}

impl TestPki {
    /// A fresh CA named `name` and a certificate for 127.0.0.1.
    pub fn new(name: &str) -> TestPki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name.push(rcgen::DnType::CommonName, name);
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![rcgen::SanType::IpAddress([127, 0, 0, 1].into())];
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        TestPki {
            ca_pem: ca.pem(),
            ca_der: ca.der().to_vec(),
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}
