//! HTTPS (issue 12, "TLS"): `retrace serve --tls-cert --tls-key
//! --tls-client-ca` with certificates made at test time (rcgen), and the
//! command line over it: a definition, a start, the bundled agent, and an
//! SSE stream followed to its end, all over mutual TLS. A client that does
//! not trust the CA, or presents no certificate, or speaks plain HTTP, gets
//! nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_support;

use std::path::{Path, PathBuf};

use cli_support::{Agent, Server, hello_json, retrace, run};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// A CA, a server certificate for 127.0.0.1 and localhost, and a client
/// certificate (with its key in the same file), as PEM files in `dir`.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client: PathBuf,
}

fn pki(dir: &Path) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["agent.example".to_owned()])
        .unwrap()
        .signed_by(&client_key, &ca)
        .unwrap();
    Pki {
        ca: write("ca.pem", ca.pem()),
        server_cert: write("server.pem", server.pem()),
        server_key: write("server.key", server_key.serialize_pem()),
        client: write(
            "client.pem",
            format!("{}{}", client.pem(), client_key.serialize_pem()),
        ),
    }
}

#[tokio::test]
async fn the_command_line_and_an_sse_stream_work_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let data = dir.path().join("data");
    let mut serve = retrace();
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .arg("--tls-cert")
        .arg(&pki.server_cert)
        .arg("--tls-key")
        .arg(&pki.server_key)
        .arg("--tls-client-ca")
        .arg(&pki.ca);
    let server = Server::spawn(serve, &data).await;
    assert!(
        server.log().contains("scheme=\"https\"") || server.log().contains("scheme=https"),
        "{}",
        server.log()
    );
    let https = server.base.replacen("http://", "https://", 1);
    let base = https.as_str();
    let ca = pki.ca.to_str().unwrap();
    let client = pki.client.to_str().unwrap();
    let file = hello_json();
    let file = file.to_str().unwrap();

    // Trusting the CA and presenting a certificate: served.
    let tls = ["--ca-cert", ca, "--client-cert", client];
    let with = |args: &[&str]| -> Vec<String> {
        args.iter()
            .chain(tls.iter())
            .map(|s| (*s).to_owned())
            .collect()
    };
    run(&with(&["workflow", "apply", file, "--server", base]))
        .await
        .expect_code(0);

    // Not trusting the CA, presenting no certificate, or plain HTTP: not.
    let untrusted = run(&[
        "workflow",
        "apply",
        file,
        "--server",
        base,
        "--client-cert",
        client,
    ])
    .await;
    assert_eq!(untrusted.code, 1, "{}", untrusted.stderr);
    let anonymous = run(&["workflow", "apply", file, "--server", base, "--ca-cert", ca]).await;
    assert_eq!(anonymous.code, 1, "{}", anonymous.stderr);
    let plain = run(&["workflow", "apply", file, "--server", &server.base]).await;
    assert_eq!(plain.code, 1, "{}", plain.stderr);

    // A start, the agent and `tail` (an SSE stream) over TLS.
    let started = run(&with(&[
        "start",
        "hello",
        "--input",
        r#"{"name":"Ada"}"#,
        "--server",
        base,
    ]))
    .await
    .expect_code(0);
    let id = started.stdout.trim().to_owned();
    let mut agent_args = vec!["--capability", "greet"];
    agent_args.extend(tls);
    let mut agent = Agent::start(base, &agent_args);
    agent.said("registered").await;
    let tail = run(&with(&["tail", &id, "--server", base]))
        .await
        .expect_code(0);
    assert!(
        tail.stdout.contains("execution_completed"),
        "{}",
        tail.stdout
    );
    let (code, log) = agent.stop().await;
    assert_eq!(code, 0, "{log}");
    server.stop().await;
}

#[tokio::test]
async fn a_key_without_a_certificate_or_a_bad_file_stops_the_server_before_it_opens_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let data = dir.path().join("data");
    let half = run(&[
        "serve".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
        "--tls-key".as_ref(),
        pki.server_key.as_os_str(),
    ])
    .await;
    assert_eq!(half.code, 2, "{}", half.stderr);
    let wrong = run(&[
        "serve".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
        "--tls-cert".as_ref(),
        pki.server_key.as_os_str(),
        "--tls-key".as_ref(),
        pki.server_key.as_os_str(),
    ])
    .await;
    assert_eq!(wrong.code, 1, "{}", wrong.stderr);
    assert!(wrong.stderr.contains("server.key"), "{}", wrong.stderr);
    assert!(!data.exists(), "the data folder was touched");
}
