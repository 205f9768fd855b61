//! The balancers compared end to end, each set up in the balancer
//! namespace: udplb (XDP on the balancer's veths), nftables DNAT with
//! `numgen inc mod N`, and nginx's UDP stream proxy. Processes are started
//! here and stopped by their own PID (SIGTERM, then SIGKILL), also on drop.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::netns::{Netns, BALANCER_V4, PREFIX};

pub const UDPLB_BIN: &str = env!("CARGO_BIN_EXE_udplb");

/// A process the bench started, with its output collected line by line.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    pub output: Vec<String>,
}

impl Proc {
    /// Starts `args` inside `ns` (`ip netns exec` execs it: the PID we get
    /// is the program's own).
    fn spawn(name: &str, ns: &Netns, args: &[&str]) -> Result<Proc> {
        let mut cmd = Command::new("ip");
        // If the bench itself is killed (SIGKILL: no drop guard runs), the
        // kernel sends the child SIGTERM, so it detaches and exits at once
        // rather than waiting for the next run's leftover cleanup.
        // SAFETY: prctl is async-signal-safe; nothing else runs between
        // fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd
            .args(["netns", "exec", &ns.name])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let (tx, lines) = mpsc::channel();
        let streams: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("piped stdout")),
            Box::new(child.stderr.take().expect("piped stderr")),
        ];
        for stream in streams {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Ok(Proc {
            name: name.into(),
            child: Some(child),
            lines,
            output: Vec::new(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Collects output until a line contains `marker`, or fails after
    /// `timeout` (or when the process exits first).
    fn wait_for(&mut self, marker: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while !self.output.iter().any(|l| l.contains(marker)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(l) => self.output.push(l),
                Err(_) if Instant::now() >= deadline => bail!(
                    "{} did not print '{marker}' in {timeout:?}:\n{}",
                    self.name,
                    self.output.join("\n")
                ),
                Err(_) => self.check_alive()?,
            }
        }
        Ok(())
    }

    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.output.push(l);
            }
            bail!(
                "{} exited ({status}):\n{}",
                self.name,
                self.output.join("\n")
            );
        }
        Ok(())
    }

    /// SIGTERM by PID; SIGKILL if it has not exited within 5 s. Returns all
    /// it printed.
    pub fn stop(&mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    eprintln!("bench: {} ignored SIGTERM; killing it", self.name);
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
                self.output.push(l);
            }
        }
        self.output.join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `udplb <options> <ifaces> <spec>` in `ns` (`ifaces`: one name or a
/// comma-separated list); returns once attached to the last one.
pub fn start_udplb(ns: &Netns, options: &[&str], ifaces: &str, spec: &str) -> Result<Proc> {
    let mut argv = vec![UDPLB_BIN];
    argv.extend_from_slice(options);
    argv.extend([ifaces, spec]);
    let mut p = Proc::spawn("udplb", ns, &argv)?;
    let last = ifaces.rsplit(',').next().unwrap_or(ifaces);
    p.wait_for(&format!("attached to {last} "), Duration::from_secs(20))?;
    Ok(p)
}

/// The balancer's own address and `port`: a local backend.
pub fn local(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(BALANCER_V4.parse().expect("BALANCER_V4"), port)
}

/// nftables DNAT in the balancer namespace: new flows to `port` (on `vip`
/// only, if given) go to the backends in turn (`numgen inc`), conntrack
/// keeps each flow on its backend. Backends on the balancer are delivered
/// locally; others are forwarded by the kernel. Removed with the namespace.
pub fn install_nft_dnat(
    ns: &Netns,
    vip: Option<Ipv4Addr>,
    port: u16,
    backends: &[SocketAddrV4],
) -> Result<()> {
    let rules = nft_dnat_rules(vip, port, backends);
    let path = std::env::temp_dir().join(format!("{PREFIX}-{}-nft.conf", std::process::id()));
    std::fs::write(&path, &rules)?;
    let result = ns.try_exec(&["nft", "-f", &path.to_string_lossy()]);
    let _ = std::fs::remove_file(&path);
    result.context("installing the nftables DNAT rule")?;
    Ok(())
}

fn nft_dnat_rules(vip: Option<Ipv4Addr>, port: u16, backends: &[SocketAddrV4]) -> String {
    let map: Vec<String> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| format!("{i} : {} . {}", b.ip(), b.port()))
        .collect();
    let daddr = vip.map(|v| format!("ip daddr {v} ")).unwrap_or_default();
    format!(
        "table ip {PREFIX} {{\n  chain prerouting {{\n    type nat hook prerouting priority dstnat; \
         policy accept;\n    {daddr}udp dport {port} dnat to numgen inc mod {} map {{ {} }}\n  }}\n}}\n",
        backends.len(),
        map.join(", ")
    )
}

/// A running nginx and the directory holding its configuration and logs.
pub struct Nginx {
    pub proc: Proc,
    dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.proc.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where Debian puts the stream module (libnginx-mod-stream).
pub const NGINX_STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// nginx's UDP stream proxy on `frontend`, round robin over the backends on
/// 127.0.0.1, one worker pinned to `cpu`. Returns once it listens.
///
/// `master_process off` makes the PID we started the one that proxies, so
/// its CPU time is one /proc read and SIGTERM stops it all. Sessions: nginx
/// keeps one upstream socket per client flow until it has been silent for
/// `proxy_timeout`, and the first datagram of a flow picks its backend.
/// That is nginx's fastest setting here; with `proxy_responses 0` (a session
/// per datagram, for backends that never answer) it delivered about half
/// as many datagrams.
pub fn start_nginx(ns: &Netns, frontend: u16, backends: &[u16], cpu: usize) -> Result<Nginx> {
    let dir = std::env::temp_dir().join(format!("{PREFIX}-{}-nginx", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let d = dir.to_string_lossy();
    let upstreams: String = backends
        .iter()
        .map(|p| format!("    server 127.0.0.1:{p};\n"))
        .collect();
    let conf = format!(
        "load_module {NGINX_STREAM_MODULE};\n\
         daemon off;\nmaster_process off;\nworker_processes 1;\n\
         pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 65536; }}\n\
         stream {{\n  upstream backends {{\n{upstreams}  }}\n  server {{\n    \
         listen {BALANCER_V4}:{frontend} udp;\n    proxy_pass backends;\n    \
         proxy_timeout 1s;\n  }}\n}}\n"
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let proc = Proc::spawn(
        "nginx",
        ns,
        &[
            "nginx",
            "-p",
            &d,
            "-e",
            &format!("{d}/error.log"),
            "-c",
            &conf_path.to_string_lossy(),
        ],
    )?;
    let mut nginx = Nginx { proc, dir };
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)?;
    nix::sched::sched_setaffinity(Pid::from_raw(nginx.proc.pid() as i32), &set)
        .context("pinning nginx")?;
    // The same priority as the receivers it shares the CPU with.
    super::netns::renice(nginx.proc.pid() as i32, super::netns::NICE)?;
    // Listening: its port appears in the namespace's /proc/net/udp.
    let port_hex = format!(":{frontend:04X} ");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        nginx.proc.check_alive()?;
        if ns.try_exec(&["cat", "/proc/net/udp"])?.contains(&port_hex) {
            return Ok(nginx);
        }
        if Instant::now() > deadline {
            bail!("nginx did not start listening on {frontend}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn nft_rules() {
        let local: Vec<std::net::SocketAddrV4> = [9876, 9877].map(super::local).to_vec();
        let r = super::nft_dnat_rules(None, 9875, &local);
        assert!(
            r.contains(
                "    udp dport 9875 dnat to numgen inc mod 2 map { 0 : 198.18.0.2 . 9876, \
                 1 : 198.18.0.2 . 9877 }"
            ),
            "{r}"
        );
        let remote = ["198.18.1.2:5353".parse().unwrap()];
        let r = super::nft_dnat_rules(Some("198.18.100.1".parse().unwrap()), 53, &remote);
        assert!(
            r.contains("ip daddr 198.18.100.1 udp dport 53 dnat to numgen inc mod 1 map { 0 : 198.18.1.2 . 5353 }"),
            "{r}"
        );
    }
}
