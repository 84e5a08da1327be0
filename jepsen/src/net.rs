//! The test network: one Linux bridge, one network namespace per node joined
//! to it by a veth pair, and the iptables rules that cut, thin or heal the
//! links between nodes.
//!
//! Everything created carries the run's prefix (`cjep` + four hex digits), so
//! `cairn-jepsen cleanup` can remove what a killed run left behind. The host
//! side needs one rule: Docker sets the FORWARD policy to DROP and, with
//! `br_netfilter`, bridged frames traverse FORWARD, so the bridge is allowed
//! explicitly. Fault rules live inside the node namespaces and vanish with
//! them.

use std::process::Command;

use thiserror::Error;

/// Every name this harness creates starts with this.
pub const PREFIX: &str = "cjep";

/// A command of the network setup failed.
#[derive(Debug, Error)]
#[error("`{command}` failed: {detail}")]
pub struct NetError {
    /// The command line.
    pub command: String,
    /// Its stderr or the spawn error.
    pub detail: String,
}

/// Runs a command and returns its stdout, or the error with its stderr.
pub fn run(args: &[&str]) -> Result<String, NetError> {
    let command = args.join(" ");
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| NetError {
            command: command.clone(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(NetError {
            command,
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The bridge, the namespaces and the host rule of one run. Dropping it
/// removes them all.
#[derive(Debug)]
pub struct Net {
    tag: String,
    subnet: u8,
    nodes: usize,
    torn_down: bool,
}

impl Net {
    /// Creates the bridge and `nodes` namespaces, each with an address on it.
    pub fn create(nodes: usize) -> Result<Self, NetError> {
        let tag = format!("{PREFIX}{:04x}", rand::random::<u16>());
        let routes = run(&["ip", "-4", "route"])?;
        let subnet = (0..64)
            .map(|_| rand::random_range(16..=250u8))
            .find(|s| !routes.contains(&format!("10.213.{s}.")))
            .ok_or_else(|| NetError {
                command: "choose a subnet".into(),
                detail: "no free 10.213.x.0/24".into(),
            })?;
        let mut net = Self {
            tag,
            subnet,
            nodes,
            torn_down: false,
        };
        // On failure `net` drops here and removes what was made so far.
        net.build()?;
        Ok(net)
    }

    fn build(&mut self) -> Result<(), NetError> {
        let br = self.bridge();
        run(&["ip", "link", "add", "name", &br, "type", "bridge"])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", self.host_ip()),
            "dev",
            &br,
        ])?;
        run(&["ip", "link", "set", &br, "up"])?;
        run(&[
            "iptables",
            "-I",
            "FORWARD",
            "1",
            "-i",
            &br,
            "-o",
            &br,
            "-m",
            "comment",
            "--comment",
            &self.tag,
            "-j",
            "ACCEPT",
        ])?;
        for i in 1..=self.nodes {
            let ns = self.namespace(i);
            let (host_end, node_end) = (format!("{}h{i}", self.tag), format!("{}v{i}", self.tag));
            run(&["ip", "netns", "add", &ns])?;
            run(&[
                "ip", "link", "add", &host_end, "type", "veth", "peer", "name", &node_end,
            ])?;
            run(&["ip", "link", "set", &node_end, "netns", &ns])?;
            run(&["ip", "link", "set", &host_end, "master", &br, "up"])?;
            let addr = format!("{}/24", self.ip(i));
            self.exec(i, &["ip", "addr", "add", &addr, "dev", &node_end])?;
            self.exec(i, &["ip", "link", "set", &node_end, "up"])?;
            self.exec(i, &["ip", "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// The run's prefix.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    /// Node `i`'s (1-based) namespace.
    pub fn namespace(&self, i: usize) -> String {
        format!("{}n{i}", self.tag)
    }

    /// The host's address on the bridge (the clients' source address).
    pub fn host_ip(&self) -> String {
        format!("10.213.{}.1", self.subnet)
    }

    /// Node `i`'s address.
    pub fn ip(&self, i: usize) -> String {
        format!("10.213.{}.{}", self.subnet, 10 + i)
    }

    /// Runs a command inside node `i`'s namespace.
    pub fn exec(&self, i: usize, args: &[&str]) -> Result<String, NetError> {
        let ns = self.namespace(i);
        let mut full = vec!["ip", "netns", "exec", ns.as_str()];
        full.extend_from_slice(args);
        run(&full)
    }

    /// Node `to` stops receiving anything node `from` sends (one way).
    pub fn cut(&self, from: usize, to: usize) -> Result<(), NetError> {
        self.exec(
            to,
            &[
                "iptables",
                "-A",
                "INPUT",
                "-s",
                &self.ip(from),
                "-j",
                "DROP",
            ],
        )?;
        Ok(())
    }

    /// Cuts both directions between every node of `a` and every node of `b`.
    pub fn partition(&self, a: &[usize], b: &[usize]) -> Result<(), NetError> {
        for &x in a {
            for &y in b {
                self.cut(x, y)?;
                self.cut(y, x)?;
            }
        }
        Ok(())
    }

    /// Node `i` drops each packet from its peers with probability `p`
    /// (clients on the host are spared: the fault is between replicas).
    pub fn loss(&self, i: usize, p: f64) -> Result<(), NetError> {
        for peer in (1..=self.nodes).filter(|&j| j != i) {
            self.exec(
                i,
                &[
                    "iptables",
                    "-A",
                    "INPUT",
                    "-s",
                    &self.ip(peer),
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &format!("{p:.3}"),
                    "-j",
                    "DROP",
                ],
            )?;
        }
        Ok(())
    }

    /// Removes every fault rule.
    pub fn heal(&self) -> Result<(), NetError> {
        for i in 1..=self.nodes {
            self.exec(i, &["iptables", "-F", "INPUT"])?;
        }
        Ok(())
    }

    /// Removes the namespaces, links and the host rule; idempotent.
    pub fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        remove_tagged(&self.tag);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Removes every namespace, link and host FORWARD rule whose name starts
/// with `prefix`; returns what it removed.
pub fn remove_tagged(prefix: &str) -> Vec<String> {
    let mut removed = Vec::new();
    if let Ok(list) = run(&["ip", "netns", "list"]) {
        for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if !ns.starts_with(prefix) {
                continue;
            }
            // Processes left in the namespace (a killed harness's nodes).
            if let Ok(pids) = run(&["ip", "netns", "pids", ns]) {
                for pid in pids.split_whitespace() {
                    if run(&["kill", "-9", pid]).is_ok() {
                        removed.push(format!("process {pid} in {ns}"));
                    }
                }
            }
            if run(&["ip", "netns", "del", ns]).is_ok() {
                removed.push(format!("namespace {ns}"));
            }
        }
    }
    if let Ok(list) = run(&["ip", "-o", "link", "show"]) {
        for line in list.lines() {
            // "12: cjep1a2bbr: <...>" or "13: cjep1a2bh1@if2: <...>"
            let Some(name) = line.split(':').nth(1).map(str::trim) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or(name);
            if name.starts_with(prefix) && run(&["ip", "link", "del", name]).is_ok() {
                removed.push(format!("link {name}"));
            }
        }
    }
    if let Ok(rules) = run(&["iptables", "-S", "FORWARD"]) {
        for rule in rules.lines() {
            if rule.starts_with("-A FORWARD") && rule.contains(&format!("--comment {prefix}")) {
                let mut args = vec!["iptables".to_string(), "-D".into()];
                args.extend(rule.split_whitespace().skip(1).map(String::from));
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                if run(&args).is_ok() {
                    removed.push(format!("rule {rule}"));
                }
            }
        }
    }
    removed
}
