//! A binary cache host: a light host serving a `file://` cache directory
//! (under the world) over HTTP on port 8080, and a signing key pair.

use std::path::PathBuf;
use std::process::{Child, Stdio};

use crate::*;

pub struct CacheHost {
    /// The cache directory (`file://` + this is an upload store).
    pub dir: PathBuf,
    /// What hosts substitute from: `http://IP:8080`.
    pub url: String,
    pub secret_key: PathBuf,
    pub public_key: String,
    server: Child,
}

impl Drop for CacheHost {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

impl World {
    /// Add light host `name` serving a new cache directory over HTTP (a
    /// static server, as any `nix copy --to file://` cache can be served),
    /// with a key pair from `nix-store --generate-binary-cache-key`.
    pub fn add_cache_host(&mut self, name: &str) -> CacheHost {
        self.add_host(name);
        let dir = self.path().join(format!("{name}-cache"));
        std::fs::create_dir_all(&dir).unwrap();
        let secret_key = self.path().join(format!("{name}-secret-key"));
        let public = self.path().join(format!("{name}-public-key"));
        sh(&[
            "nix-store",
            "--generate-binary-cache-key",
            &format!("{name}-1"),
            secret_key.to_str().unwrap(),
            public.to_str().unwrap(),
        ]);
        let public_key = std::fs::read_to_string(&public).unwrap().trim().to_string();
        let server = self
            .host(name)
            .command(&[
                "python3",
                "-m",
                "http.server",
                "8080",
                "--bind",
                "0.0.0.0",
                "--directory",
                dir.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the cache's HTTP server");
        CacheHost {
            url: format!("http://{}:8080", self.host(name).ip),
            dir,
            secret_key,
            public_key,
            server,
        }
    }

    /// Let light host `host`'s Nix trust `key` (what the deployment
    /// module's nix.settings do on NixOS).
    pub fn trust_cache_key(&self, host: &str, key: &str) {
        let conf = self.host(host).dir.join("etc-nix/nix.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str(&format!("trusted-public-keys = {key}\n"));
        std::fs::write(&conf, text).unwrap();
    }
}
