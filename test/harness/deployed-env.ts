/**
 * Loaded for its effect by every harness module that starts processes: the
 * processes the tests and benchmarks start (twilld, twill, the capture
 * driver) get this process's environment less NODE_EXTRA_CA_CERTS.
 *
 * Why: Node reads and parses that CA bundle at every start, before any
 * script runs (57 ms and 1.8 MB per `node -e 0` on the CI machine, whose
 * shell sets it). A deployed twilld does not have it (the systemd unit and
 * the image set no such variable, and twilld checks etcd's certificate
 * against --etcd-cafile), so with it every start-up and memory figure would
 * measure the build shell instead of the agent, and every test would pay
 * it per process.
 */
delete process.env.NODE_EXTRA_CA_CERTS;

export {};
