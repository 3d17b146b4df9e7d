//! A RabbitMQ node of a test's own, so the test can stop, restart and cut it without touching
//! the machine's shared broker (127.0.0.1:5672): its own node name, AMQP and distribution
//! ports, data, logs, configuration and Erlang cookie, all under the test's temp dir, run from
//! Debian's `rabbitmq-server` as the current user; killed (the whole process group) when the
//! test ends, passed or not. And [`HoldingProxy`], a forwarder in front of it that holds the
//! worker's traffic at a chosen AMQP method, so a fault lands at that exact moment (mid-declare,
//! results in flight) by waiting for the event rather than sleeping and hoping.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where Debian's package keeps the real scripts: `/usr/sbin/rabbitmq-*` wrap them in `su
/// rabbitmq`, which could not read a root-owned temp dir.
const RABBITMQ_BIN: &str = "/usr/lib/rabbitmq/bin";

/// How long a node may take to boot (about 5–10 s on a loaded machine).
const BOOT_LIMIT: Duration = Duration::from_secs(90);

/// One private RabbitMQ node.
pub struct PrivateBroker {
    /// `rabbitmqctl -n` name, e.g. `test-restart-1234-…@localhost`.
    pub node: String,
    /// Its AMQP port on 127.0.0.1.
    pub port: u16,
    dist_port: u16,
    dir: tempfile::TempDir,
    server: Option<Child>,
}

impl PrivateBroker {
    /// Starts a node with the default settings and waits until it takes AMQP connections.
    pub fn start(test: &str) -> PrivateBroker {
        PrivateBroker::start_with(test, "")
    }

    /// Starts a node whose `rabbitmq.conf` also holds `settings` (e.g. `max_message_size = 8192`).
    pub fn start_with(test: &str, settings: &str) -> PrivateBroker {
        let dir = tempfile::tempdir().expect("a temp dir for the node");
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000;
        let node = format!("test-{test}-{}-{nanos}@localhost", std::process::id());
        let (port, dist_port) = (free_port(), free_port());
        let conf = format!(
            "listeners.tcp.local = 127.0.0.1:{port}\nloopback_users = none\nlog.console = false\n\
             log.file.level = info\n{settings}\n"
        );
        std::fs::write(dir.path().join("rabbitmq.conf"), conf).unwrap();
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").unwrap();
        std::fs::write(dir.path().join("rabbitmq-env.conf"), "").unwrap();
        // The node and its CLI read the cookie from $HOME; one of the test's own, made before
        // either starts (the node would write one, but the CLI may look first).
        let cookie = dir.path().join(".erlang.cookie");
        std::fs::write(&cookie, format!("TESTCOOKIE{nanos}{}", std::process::id())).unwrap();
        std::fs::set_permissions(&cookie, std::os::unix::fs::PermissionsExt::from_mode(0o400)).unwrap();
        let mut broker = PrivateBroker { node, port, dist_port, dir, server: None };
        broker.spawn();
        broker
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Whether the node takes TCP connections on its AMQP port (the listener opens last in
    /// the boot, and closes first when the broker stops).
    pub fn listening(&self) -> bool {
        TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_millis(200)).is_ok()
    }

    /// `rabbitmqctl -n NODE ARGS…`, asserting success.
    pub fn ctl(&self, args: &[&str]) -> Output {
        let output = self
            .with_node_env(&mut Command::new(format!("{RABBITMQ_BIN}/rabbitmqctl")))
            .arg("-n")
            .arg(&self.node)
            .args(args)
            .output()
            .expect("rabbitmqctl runs");
        assert!(
            output.status.success(),
            "rabbitmqctl -n {} {args:?}: {}{}",
            self.node,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Stops the broker inside the node (`stop_app`): every connection is closed
    /// (CONNECTION_FORCED) and the AMQP port refuses until [`start_app`](Self::start_app).
    pub fn stop_app(&self) {
        self.ctl(&["stop_app"]);
        assert!(!self.listening(), "port {} still listens after stop_app", self.port);
    }

    /// Starts the broker again after [`stop_app`](Self::stop_app); returns once it listens.
    pub fn start_app(&mut self) {
        self.ctl(&["start_app"]);
        self.await_listening();
    }

    /// Stops the whole node (`rabbitmqctl stop`, as a machine's shutdown would) and waits for
    /// its process to end.
    pub fn stop(&mut self) {
        self.ctl(&["stop"]);
        if let Some(mut server) = self.server.take() {
            let started = Instant::now();
            while server.try_wait().unwrap().is_none() {
                assert!(started.elapsed() < BOOT_LIMIT, "node {} did not stop", self.node);
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Starts the node again on the same data (queues and messages survive), after [`stop`](Self::stop).
    pub fn start_again(&mut self) {
        assert!(self.server.is_none(), "the node is still running");
        self.spawn();
    }

    /// The node's own log, for a failing test's message.
    pub fn log(&self) -> String {
        let logs = self.dir.path().join("log");
        let mut text = String::new();
        for entry in std::fs::read_dir(&logs).into_iter().flatten().flatten() {
            text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
        text + &std::fs::read_to_string(self.dir.path().join("server.out")).unwrap_or_default()
    }

    /// Runs `rabbitmq-server` in the foreground, in a process group of its own (so Drop can
    /// kill the Erlang VM and its helpers together), and waits until it listens.
    fn spawn(&mut self) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.out"))
            .unwrap();
        let server = self
            .with_node_env(&mut Command::new(format!("{RABBITMQ_BIN}/rabbitmq-server")))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("rabbitmq-server starts (Debian's rabbitmq-server package)");
        self.server = Some(server);
        self.await_listening();
    }

    fn await_listening(&mut self) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.server.as_mut().and_then(|server| server.try_wait().ok().flatten()) {
                panic!("node {} exited ({status}):\n{}", self.node, self.log());
            }
            if self.listening() {
                return;
            }
            assert!(
                started.elapsed() < BOOT_LIMIT,
                "node {} never listened on {}:\n{}",
                self.node,
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The environment that makes the scripts use this node's files and ports, and nothing
    /// of the machine's node (`/etc/rabbitmq/rabbitmq-env.conf` names that one).
    fn with_node_env<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        let dir = self.dir.path();
        command
            .env("HOME", dir)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_CONFIG_FILES", dir.join("conf.d"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", dir.join("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_PID_FILE", dir.join("node.pid"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", server.id())]).status();
            let _ = server.wait();
        }
    }
}

/// A port nothing listens on now (bound and released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An AMQP method by class and method id (AMQP 0-9-1 §1.2).
pub type Method = (u16, u16);
/// `exchange.declare`: the first thing the worker sends when it declares the topology.
pub const EXCHANGE_DECLARE: Method = (40, 10);
/// `basic.publish`: a result on its way.
pub const BASIC_PUBLISH: Method = (60, 40);

/// What the proxy does with the client's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// Forwarding; the next frame of the method is held.
    Armed,
    /// A frame of the method is held; nothing more of that connection goes to the broker.
    Holding,
    /// Forward the held frame and carry on.
    Release,
    /// Close both sides of the held connection instead (a reset mid-conversation).
    Cut,
    /// Forwarding, nothing armed.
    Off,
}

/// A TCP forwarder from a port of its own to the private broker's: a real broker at the far
/// end, this only decides *when* a fault lands. Armed with an AMQP method, it holds the
/// client's next frame of that method (and everything after it) until the test has acted.
pub struct HoldingProxy {
    pub port: u16,
    method: Method,
    hold: Arc<(Mutex<Hold>, Condvar)>,
}

impl HoldingProxy {
    /// Forwards to `target_port`, armed to hold the next frame of `method`.
    pub fn start(target_port: u16, method: Method) -> HoldingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = Arc::new((Mutex::new(Hold::Armed), Condvar::new()));
        let shared = Arc::clone(&hold);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", target_port)) else {
                    continue; // the broker is down: the client sees its connection closed
                };
                let (down_from, down_to) = (upstream.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || pump(down_from, down_to));
                let hold = Arc::clone(&shared);
                std::thread::spawn(move || pump_frames(client, upstream, method, &hold));
            }
        });
        HoldingProxy { port, method, hold }
    }

    /// The broker's URL through the proxy.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Waits until a frame of the armed method is held; says whether one was.
    pub fn wait_held(&self, limit: Duration) -> bool {
        let (state, changed) = &*self.hold;
        let guard = state.lock().unwrap();
        let (guard, _) = changed.wait_timeout_while(guard, limit, |hold| *hold != Hold::Holding).unwrap();
        *guard == Hold::Holding
    }

    /// Lets the held frame through; with `rearm`, the next frame of the method is held again.
    pub fn release(&self, rearm: bool) {
        self.decide(Hold::Release, rearm);
    }

    /// Closes the held connection both ways instead of forwarding; with `rearm`, the next
    /// frame of the method (on the client's next connection) is held again.
    pub fn cut(&self, rearm: bool) {
        self.decide(Hold::Cut, rearm);
    }

    fn decide(&self, decision: Hold, rearm: bool) {
        let (state, changed) = &*self.hold;
        let mut hold = state.lock().unwrap();
        assert_eq!(*hold, Hold::Holding, "nothing of {:?} is held", self.method);
        *hold = decision;
        changed.notify_all();
        // The pump takes the decision and then leaves the state at what `rearm` asks.
        let (mut hold, _) =
            changed.wait_timeout_while(hold, Duration::from_secs(10), |hold| *hold == decision).unwrap();
        *hold = if rearm { Hold::Armed } else { Hold::Off };
    }
}

/// Copies one direction until either side closes, then closes the other.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// Copies the client's AMQP frames to the broker, holding the first frame of `method` while
/// armed, until the test releases or cuts it.
fn pump_frames(
    mut client: TcpStream,
    mut upstream: TcpStream,
    method: Method,
    hold: &(Mutex<Hold>, Condvar),
) {
    let close = |client: &TcpStream, upstream: &TcpStream| {
        let _ = client.shutdown(Shutdown::Both);
        let _ = upstream.shutdown(Shutdown::Both);
    };
    // "AMQP" 0 0 9 1, then frames: type (1), channel (2), size (4), payload, 0xCE.
    let mut protocol_header = [0u8; 8];
    if client.read_exact(&mut protocol_header).is_err() || upstream.write_all(&protocol_header).is_err() {
        return close(&client, &upstream);
    }
    loop {
        let mut header = [0u8; 7];
        if client.read_exact(&mut header).is_err() {
            return close(&client, &upstream);
        }
        let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
        let mut rest = vec![0u8; size + 1];
        if client.read_exact(&mut rest).is_err() {
            return close(&client, &upstream);
        }
        let is_method = header[0] == 1 && size >= 4;
        let ids = (u16::from_be_bytes([rest[0], rest[1]]), u16::from_be_bytes([rest[2], rest[3]]));
        if is_method && ids == method {
            let (state, changed) = hold;
            let mut current = state.lock().unwrap();
            if *current == Hold::Armed {
                *current = Hold::Holding;
                changed.notify_all();
                current = changed.wait_while(current, |hold| *hold == Hold::Holding).unwrap();
                let decision = *current;
                // Tell `decide` the decision was taken.
                *current = Hold::Off;
                changed.notify_all();
                drop(current);
                if decision == Hold::Cut {
                    return close(&client, &upstream);
                }
            }
        }
        if upstream.write_all(&header).is_err() || upstream.write_all(&rest).is_err() {
            return close(&client, &upstream);
        }
    }
}
