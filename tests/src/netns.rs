//! Network namespaces for tests: an agent runs in its own namespace, joined to the root
//! namespace by a veth pair, and can be cut off by taking the pair's root end down.

use std::process::Command;

/// One namespace and its veth pair; both are deleted when this is dropped.
pub struct Netns {
    pub name: String,
    /// The host namespace's end of the pair, e.g. `10.214.1.1`: where the master listens.
    pub host_addr: String,
    /// The namespace's end, e.g. `10.214.1.2`.
    pub ns_addr: String,
    root_if: String,
    /// The namespace the pair's host end is in: the root one when `None`.
    host_ns: Option<String>,
}

impl Netns {
    /// Namespace number `index` (0..=250) of this test process, on 10.214.`index`.0/24 (the
    /// fleet test takes 10.213.x.0/24).
    /// `Err` with the failing command when namespaces are not permitted here.
    pub fn create(tag: &str, index: u8) -> Result<Netns, String> {
        Netns::create_behind(tag, index, None)
    }

    /// [`Netns::create`], or `None` (the test is skipped, saying why) where namespaces are
    /// not permitted: not as root. As root a failure to create one fails the test.
    /// Every test of a process needs its own `index` (interface names and subnets).
    pub fn create_or_skip(tag: &str, index: u8) -> Option<Netns> {
        match Netns::create(tag, index) {
            Ok(ns) => Some(ns),
            Err(e) if !running_as_root() => {
                eprintln!("skipped: network namespaces need root here ({e})");
                None
            }
            Err(e) => panic!("creating a network namespace: {e}"),
        }
    }

    /// Like [`Netns::create`], but joined to `gateway`'s namespace instead of the root
    /// one: a site's LAN behind its router, which cannot reach the root namespace.
    pub fn create_behind(tag: &str, index: u8, gateway: Option<&Netns>) -> Result<Netns, String> {
        let pid = std::process::id() % 100_000;
        let name = format!("wasmos-{tag}-{pid}-{index}");
        // Interface names are limited to 15 bytes.
        let root_if = format!("w{pid}r{index}");
        let ns_if = format!("w{pid}n{index}");
        let host_addr = format!("10.214.{index}.1");
        let ns_addr = format!("10.214.{index}.2");
        ip(&["netns", "add", &name])?;
        let ns = Netns {
            name,
            host_addr,
            ns_addr,
            root_if,
            host_ns: gateway.map(|g| g.name.clone()),
        };
        ip(&[
            "link",
            "add",
            &ns.root_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ])?;
        ip(&["link", "set", &ns_if, "netns", &ns.name])?;
        if let Some(host) = &ns.host_ns {
            ip(&["link", "set", &ns.root_if, "netns", host])?;
        }
        ns.host_ip(&[
            "addr",
            "add",
            &format!("{}/24", ns.host_addr),
            "dev",
            &ns.root_if,
        ])?;
        ns.host_ip(&["link", "set", &ns.root_if, "up"])?;
        let in_ns = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns.name, "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        in_ns(&["addr", "add", &format!("{}/24", ns.ns_addr), "dev", &ns_if])?;
        in_ns(&["link", "set", &ns_if, "up"])?;
        in_ns(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip netns exec NAME program`: a command run inside the namespace.
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Cuts the namespace off (`up == false`) or joins it again.
    pub fn set_link(&self, up: bool) -> Result<(), String> {
        let state = if up { "up" } else { "down" };
        self.host_ip(&["link", "set", &self.root_if, state])
    }

    /// Drops `percent` of the packets the namespace sends and receives, at random (nft's
    /// `numgen random`, this kernel having no `netem`); 0 removes the rule.
    pub fn set_loss(&self, percent: u8) -> Result<(), String> {
        let nft = |args: &[&str]| {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.name, "nft"])
                .args(args)
                .output()
                .map_err(|e| format!("nft {}: {e}", args.join(" ")))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "nft {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        let _ = nft(&["delete", "table", "inet", "wasmos_loss"]);
        if percent == 0 {
            return Ok(());
        }
        nft(&["add", "table", "inet", "wasmos_loss"])?;
        let below = percent.to_string();
        for (chain, hook) in [("out", "output"), ("in", "input")] {
            let spec = format!("{{ type filter hook {hook} priority 0; }}");
            nft(&["add", "chain", "inet", "wasmos_loss", chain, &spec])?;
            let rule = ["add", "rule", "inet", "wasmos_loss", chain];
            let drop = ["numgen", "random", "mod", "100", "<", &below, "drop"];
            nft(&[&rule[..], &drop[..]].concat())?;
        }
        Ok(())
    }

    /// `ip` in the namespace the pair's host end is in.
    fn host_ip(&self, args: &[&str]) -> Result<(), String> {
        match &self.host_ns {
            Some(host) => {
                let mut all = vec!["-n", host.as_str()];
                all.extend_from_slice(args);
                ip(&all)
            }
            None => ip(args),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.host_ip(&["link", "del", &self.root_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The owner of `/proc/self` is the process's effective user.
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
