//! The tools only the bench needs (nft, nginx with its stream module),
//! installed with apt-get when missing. `make bench` runs scripts/
//! install-deps.sh first for everything the build needs; these stay out of
//! it because nothing but the bench uses them.
//!
//! Each is installed on its own, so a missing nginx only skips the nginx
//! case. Debian starts nginx's service on install unless
//! /usr/sbin/policy-rc.d forbids it: when there is none, one that forbids it
//! is put there for the duration of the install and removed after, so the
//! bench never leaves a server listening in the root namespace.

use std::path::Path;
use std::process::Command;

/// What the end-to-end cases can use; `Err` holds why a tool is missing.
pub struct Tools {
    pub nft: Result<(), String>,
    pub nginx: Result<(), String>,
}

pub fn ensure() -> Tools {
    let nft = ensure_one("nftables", &["nftables"], || {
        Path::new("/usr/sbin/nft").exists()
    });
    let nginx = ensure_one("nginx", &["nginx", "libnginx-mod-stream"], || {
        Path::new("/usr/sbin/nginx").exists()
            && Path::new(super::balancers::NGINX_STREAM_MODULE).exists()
    });
    Tools { nft, nginx }
}

fn ensure_one(what: &str, packages: &[&str], present: impl Fn() -> bool) -> Result<(), String> {
    if present() {
        return Ok(());
    }
    if Path::new("/usr/bin/apt-get").exists() {
        println!(
            "bench: {what} is missing; installing {} with apt-get",
            packages.join(" ")
        );
        let guard = PolicyGuard::install();
        // The package lists may be stale or absent: update once and retry.
        if !apt_install(packages) {
            println!("bench: apt-get install failed; running apt-get update and retrying");
            let _ = Command::new("apt-get").args(["update", "-q"]).status();
            apt_install(packages);
        }
        drop(guard);
    }
    if present() {
        Ok(())
    } else {
        Err(format!(
            "{what} is not installed and could not be installed ({})",
            packages.join(" ")
        ))
    }
}

fn apt_install(packages: &[&str]) -> bool {
    Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// A policy-rc.d that forbids starting services, present only while it
/// lives, and only if the system had none.
struct PolicyGuard(bool);

impl PolicyGuard {
    fn install() -> PolicyGuard {
        if Path::new(POLICY_RC_D).exists() {
            return PolicyGuard(false);
        }
        let ok = std::fs::write(
            POLICY_RC_D,
            "#!/bin/sh\n# udplb bench: no service starts\nexit 101\n",
        )
        .and_then(|_| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(POLICY_RC_D, std::fs::Permissions::from_mode(0o755))
        })
        .is_ok();
        PolicyGuard(ok)
    }
}

impl Drop for PolicyGuard {
    fn drop(&mut self) {
        if self.0 {
            let _ = std::fs::remove_file(POLICY_RC_D);
        }
    }
}
