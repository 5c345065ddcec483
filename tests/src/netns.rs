//! Network namespaces for tests: an agent runs in its own namespace, joined to the root
//! namespace by a veth pair, and can be cut off by taking the pair's root end down.

use std::process::Command;

/// One namespace and its veth pair; both are deleted when this is dropped.
pub struct Netns {
    pub name: String,
    /// The root namespace's end of the pair, e.g. `10.213.1.1`: where the master listens.
    pub host_addr: String,
    /// The namespace's end, e.g. `10.213.1.2`.
    pub ns_addr: String,
    root_if: String,
}

impl Netns {
    /// Namespace number `index` (0..=250) of this test process, on 10.213.`index`.0/24.
    /// `Err` with the failing command when namespaces are not permitted here.
    pub fn create(tag: &str, index: u8) -> Result<Netns, String> {
        let pid = std::process::id() % 100_000;
        let name = format!("wasmos-{tag}-{pid}-{index}");
        // Interface names are limited to 15 bytes.
        let root_if = format!("w{pid}r{index}");
        let ns_if = format!("w{pid}n{index}");
        let host_addr = format!("10.213.{index}.1");
        let ns_addr = format!("10.213.{index}.2");
        ip(&["netns", "add", &name])?;
        let ns = Netns {
            name,
            host_addr,
            ns_addr,
            root_if,
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
        ip(&[
            "addr",
            "add",
            &format!("{}/24", ns.host_addr),
            "dev",
            &ns.root_if,
        ])?;
        ip(&["link", "set", &ns.root_if, "up"])?;
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
        ip(&["link", "set", &self.root_if, state])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.root_if]);
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
