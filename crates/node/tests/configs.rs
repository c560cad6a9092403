//! The example configs parse, provisioned deployments load, and bad files give clear errors.

use std::path::{Path, PathBuf};

use m2msec_crypto::rng::SeededRng;
use m2msec_node::collab::config::{
    ClientFile, ProxyFileConfig, ServerFile, TrustedFile, load_client, load_proxy, load_server,
    load_trusted,
};
use m2msec_node::collab::deployment::Params;
use m2msec_node::collab::provision::{ProvisionOptions, provision};
use m2msec_node::runtime::config::load_toml;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

#[test]
fn every_example_config_parses() -> m2msec_node::Result<()> {
    let _: ClientFile = load_toml(&examples().join("collab-client.toml"))?;
    let _: ProxyFileConfig = load_toml(&examples().join("collab-proxy.toml"))?;
    let _: TrustedFile = load_toml(&examples().join("collab-trusted.toml"))?;
    let _: ServerFile = load_toml(&examples().join("collab-server.toml"))?;
    Ok(())
}

fn provisioned() -> m2msec_node::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir().map_err(|e| m2msec_node::Error::Usage(e.to_string()))?;
    let opts = ProvisionOptions {
        params: Params::default(),
        port: 7400,
        force: false,
    };
    let out = provision(dir.path(), &opts, &mut SeededRng::from_seed_u64(3))?;
    assert_eq!(out.commands.len(), 8);
    Ok(dir)
}

#[test]
fn provisioned_configs_load_with_their_keys() -> m2msec_node::Result<()> {
    let dir = provisioned()?;
    let d = dir.path();
    let client = load_client(&d.join("collab-client.toml"))?;
    assert_eq!(client.config.proxies.len(), 5);
    load_trusted(&d.join("collab-trusted.toml"))?;
    load_server(&d.join("collab-server.toml"))?;
    for i in 1..=5 {
        load_proxy(&d.join(format!("collab-proxy-{i}.toml")))?;
    }
    // A second provision into the same directory is refused without --force.
    let again = provision(
        d,
        &ProvisionOptions {
            params: Params::default(),
            port: 7400,
            force: false,
        },
        &mut SeededRng::from_seed_u64(4),
    );
    assert!(again.is_err());
    Ok(())
}

fn error_of<T: std::fmt::Debug>(r: m2msec_node::Result<T>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_files_are_named_with_what_is_wrong() -> m2msec_node::Result<()> {
    let dir = provisioned()?;
    let d = dir.path();
    // Owner-only, as m2msec writes them: the errors checked here are about the contents.
    let write = |name: &str, text: &str| {
        let mut f =
            m2msec_node::private::open(&d.join(name), m2msec_node::private::Write::Truncate)
                .unwrap_or_else(|e| panic!("write: {e}"));
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap_or_else(|e| panic!("write: {e}"));
        d.join(name)
    };
    let server = std::fs::read_to_string(d.join("collab-server.toml")).unwrap_or_default();

    let e = error_of(load_server(&d.join("missing.toml")));
    assert!(
        e.contains("missing.toml") && e.contains("no such file"),
        "{e}"
    );

    let f = write("unknown.toml", &format!("{server}\ncolour = \"blue\"\n"));
    let e = error_of(load_server(&f));
    assert!(
        e.contains("unknown.toml") && e.contains("unknown field `colour`"),
        "{e}"
    );

    let f = write(
        "missing-field.toml",
        &server.replace("identity = \"server\"", ""),
    );
    let e = error_of(load_server(&f));
    assert!(e.contains("missing field `identity`"), "{e}");

    let f = write(
        "bad-addr.toml",
        &server.replace("127.0.0.3:7400", "127.0.0.3"),
    );
    let e = error_of(load_server(&f));
    assert!(e.contains("bad-addr.toml") && e.contains("listen"), "{e}");

    // A public key where a private key belongs.
    let f = write(
        "wrong-label.toml",
        &server.replace("keys/server-sig.key", "keys/trusted.pub"),
    );
    let e = error_of(load_server(&f));
    assert!(
        e.contains("trusted.pub") && e.contains("expected \"PRIVATE KEY\""),
        "{e}"
    );

    // A key file that is not PEM, and one whose body is garbage.
    write("keys/junk.key", "hello\n");
    let f = write(
        "junk.toml",
        &server.replace("keys/server-sig.key", "keys/junk.key"),
    );
    let e = error_of(load_server(&f));
    assert!(
        e.contains("junk.key") && e.contains("not a PEM file"),
        "{e}"
    );
    write(
        "keys/garbage.key",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let f = write(
        "garbage.toml",
        &server.replace("keys/server-sig.key", "keys/garbage.key"),
    );
    let e = error_of(load_server(&f));
    assert!(
        e.contains("garbage.key") && e.contains("signing key"),
        "{e}"
    );

    // A symmetric key of the wrong length.
    write(
        "keys/short.key",
        "-----BEGIN M2MSEC SYMMETRIC KEY-----\nAQID\n-----END M2MSEC SYMMETRIC KEY-----\n",
    );
    let client = std::fs::read_to_string(d.join("collab-client.toml")).unwrap_or_default();
    let f = write(
        "short.toml",
        &client.replace("keys/psk-client-trusted.key", "keys/short.key"),
    );
    let e = error_of(load_client(&f));
    assert!(e.contains("short.key") && e.contains("malformed"), "{e}");

    // k > n is named.
    let f = write("k.toml", &client.replace("k = 3", "k = 9"));
    let e = error_of(load_client(&f));
    assert!(e.contains("params.k"), "{e}");
    Ok(())
}
