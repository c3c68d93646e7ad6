// weir-cni: the chained CNI plugin executable that runtimes exec for every
// pod sandbox. It is deliberately tiny C: a Node.js process costs ~25 ms just
// to boot, more than the whole budget weir may add to a sandbox start. It
// relays the runtime's environment and stdin to the node agent
// (POST /v1/cni/exec on the agent's unix socket), where the real plugin logic
// (validation, spec versions, capture) runs, and prints what the agent
// answers. Only what must work WITHOUT the agent lives here:
//   - VERSION;
//   - pods in excluded namespaces never depend on the agent (prevResult is
//     passed through unchanged) — but what is echoed is validated first with
//     the agent path's codes and field names (CNI_* variables, name,
//     prevResult an object, prevResult.ips[N].address strict CIDR);
//   - the one CNI input limit (MAX_STDIN = MAX_CNI_INPUT_BYTES in
//     src/cni/spec.ts): more stdin than that is code 4 naming the limit;
//   - fail closed: ADD/CHECK/GC with the agent unreachable → CNI error 11
//     (try again later) so the runtime retries; STATUS → 50;
//   - DEL always succeeds (the sandbox is going away either way).
// Logs go to stderr only; stdout carries nothing but the CNI result.
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "relay.h"

// Must equal MAX_CNI_INPUT_BYTES in src/cni/spec.ts (test/unit/cni-input-limit.test.ts checks both paths).
#define MAX_STDIN 8388608u
#define MAX_RESPONSE (16u << 20)
#define DEFAULT_SOCKET "/var/run/weir/cni.sock"
#define DEFAULT_TIMEOUT_MS 5000
#define MAX_TIMEOUT_MS 30000
#define LATEST_VERSION "1.1.0"

static const char *const kVersions[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};

// ---- growable buffer -------------------------------------------------------
typedef struct { char *p; size_t len, cap; } buf_t;

static void buf_reserve(buf_t *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + extra + 1) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) { fputs("weir-cni: out of memory\n", stderr); exit(1); }
  b->p = p; b->cap = cap;
}
static void buf_add(buf_t *b, const char *s, size_t n) { buf_reserve(b, n); memcpy(b->p + b->len, s, n); b->len += n; b->p[b->len] = 0; }
static void buf_str(buf_t *b, const char *s) { buf_add(b, s, strlen(s)); }
static void buf_fmt(buf_t *b, const char *fmt, ...) {
  va_list ap; va_start(ap, fmt); int n = vsnprintf(NULL, 0, fmt, ap); va_end(ap);
  buf_reserve(b, (size_t)n); va_start(ap, fmt); vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap); va_end(ap); b->len += (size_t)n;
}
static void buf_json_string(buf_t *b, const char *s, size_t n) {
  buf_add(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') { char e[2] = {'\\', (char)c}; buf_add(b, e, 2); }
    else if (c < 0x20) buf_fmt(b, "\\u%04x", c);
    else buf_add(b, (const char *)&c, 1);
  }
  buf_add(b, "\"", 1);
}

// ---- output ---------------------------------------------------------------
static const char *answer_version = LATEST_VERSION;

int cni_error(int code, const char *msg, const char *details) {
  buf_t b = {0};
  buf_str(&b, "{\"cniVersion\":"); buf_json_string(&b, answer_version, strlen(answer_version));
  buf_fmt(&b, ",\"code\":%d,\"msg\":", code); buf_json_string(&b, msg, strlen(msg));
  if (details) { buf_str(&b, ",\"details\":"); buf_json_string(&b, details, strlen(details)); }
  buf_str(&b, "}\n");
  fwrite(b.p, 1, b.len, stdout);
  fprintf(stderr, "weir-cni: error %d: %s%s%s\n", code, msg, details ? ": " : "", details ? details : "");
  return 1;
}

bool supported(const char *v) {
  for (size_t i = 0; i < sizeof kVersions / sizeof *kVersions; i++) if (v && !strcmp(v, kVersions[i])) return true;
  return false;
}

static int print_version(const conf_t *c) {
  char *asked = c->valid ? plain_string(c->cni_version) : NULL;
  buf_t b = {0};
  buf_str(&b, "{\"cniVersion\":\""); buf_str(&b, supported(asked) ? asked : LATEST_VERSION); buf_str(&b, "\",\"supportedVersions\":[");
  for (size_t i = 0; i < sizeof kVersions / sizeof *kVersions; i++) buf_fmt(&b, "%s\"%s\"", i ? "," : "", kVersions[i]);
  buf_str(&b, "]}\n");
  fwrite(b.p, 1, b.len, stdout);
  return 0;
}

// ---- the agent exchange ---------------------------------------------------
static long long now_ms(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000; }

typedef struct { int exit_code; buf_t body; char reason[256]; bool timed_out; } reply_t;

static bool wait_fd(int fd, short ev, long long deadline) {
  for (;;) {
    long long left = deadline - now_ms();
    if (left <= 0) return false;
    struct pollfd p = {fd, ev, 0};
    int r = poll(&p, 1, (int)left);
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

// POST body to path; fills reply. Returns false (reason set) when the agent
// could not be reached or did not answer in time.
static bool agent_post(const char *sock, const char *path, const buf_t *body, int timeout_ms, reply_t *r) {
  memset(r, 0, sizeof *r);
  long long deadline = now_ms() + timeout_ms;
  struct sockaddr_un a; memset(&a, 0, sizeof a); a.sun_family = AF_UNIX;
  if (strlen(sock) >= sizeof a.sun_path) { snprintf(r->reason, sizeof r->reason, "agent socket path too long: %s", sock); return false; }
  strcpy(a.sun_path, sock);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) { snprintf(r->reason, sizeof r->reason, "socket: %s", strerror(errno)); return false; }
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS && errno != EAGAIN) {
    snprintf(r->reason, sizeof r->reason, "connect %s: %s", sock, strerror(errno)); close(fd); return false;
  }
  buf_t req = {0};
  buf_fmt(&req, "POST %s HTTP/1.1\r\nHost: weir-agent\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", path, body->len);
  buf_add(&req, body->p, body->len);
  for (size_t off = 0; off < req.len;) {
    if (!wait_fd(fd, POLLOUT, deadline)) { r->timed_out = true; snprintf(r->reason, sizeof r->reason, "timed out after %d ms writing to %s", timeout_ms, sock); close(fd); return false; }
    ssize_t w = send(fd, req.p + off, req.len - off, MSG_NOSIGNAL);
    if (w < 0) { if (errno == EAGAIN || errno == EINTR) continue; snprintf(r->reason, sizeof r->reason, "write %s: %s", sock, strerror(errno)); close(fd); return false; }
    off += (size_t)w;
  }
  free(req.p);
  buf_t in = {0};
  for (;;) {
    if (!wait_fd(fd, POLLIN, deadline)) { r->timed_out = true; snprintf(r->reason, sizeof r->reason, "no answer within %d ms from %s", timeout_ms, sock); close(fd); return false; }
    buf_reserve(&in, 65536);
    ssize_t n = recv(fd, in.p + in.len, 65536, 0);
    if (n < 0) { if (errno == EAGAIN || errno == EINTR) continue; snprintf(r->reason, sizeof r->reason, "read %s: %s", sock, strerror(errno)); close(fd); return false; }
    if (n == 0) break;
    in.len += (size_t)n; in.p[in.len] = 0;
    if (in.len > MAX_RESPONSE) { snprintf(r->reason, sizeof r->reason, "answer from %s too large", sock); close(fd); return false; }
  }
  close(fd);
  char *hdr_end = in.len ? strstr(in.p, "\r\n\r\n") : NULL;
  int status = 0;
  if (!hdr_end || sscanf(in.p, "HTTP/1.%*d %d", &status) != 1) { snprintf(r->reason, sizeof r->reason, "malformed answer from %s", sock); return false; }
  *hdr_end = 0;
  const char *body_start = hdr_end + 4;
  size_t body_len = in.len - (size_t)(body_start - in.p);
  if (status != 200) {
    snprintf(r->reason, sizeof r->reason, "agent answered HTTP %d on %s: %.150s", status, path, body_start);
    return false;
  }
  r->exit_code = -1;
  for (char *h = strstr(in.p, "\r\n"); h; h = strstr(h + 2, "\r\n")) {
    if (!strncasecmp(h + 2, "x-weir-exit-code:", 17)) r->exit_code = atoi(h + 19);
  }
  if (r->exit_code < 0) { snprintf(r->reason, sizeof r->reason, "answer from %s lacks X-Weir-Exit-Code", sock); return false; }
  buf_add(&r->body, body_start, body_len);
  free(in.p);
  return true;
}

static const char *const kEnv[] = {"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"};

static void exec_body(buf_t *b, const char *stdin_p, size_t stdin_n, const char *command_override) {
  buf_str(b, "{\"env\":{");
  bool first = true;
  for (size_t i = 0; i < sizeof kEnv / sizeof *kEnv; i++) {
    const char *v = (i == 0 && command_override) ? command_override : getenv(kEnv[i]);
    if (!v) continue;
    if (!first) buf_str(b, ",");
    first = false;
    buf_json_string(b, kEnv[i], strlen(kEnv[i])); buf_str(b, ":"); buf_json_string(b, v, strlen(v));
  }
  buf_str(b, "},\"stdin\":"); buf_json_string(b, stdin_p, stdin_n); buf_str(b, "}");
}

// K8S_POD_NAMESPACE from CNI_ARGS ("K=V;K=V").
static char *pod_namespace(void) {
  const char *args = getenv("CNI_ARGS");
  if (!args) return NULL;
  for (const char *p = args; *p;) {
    const char *end = strchr(p, ';'); size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n > 18 && !strncmp(p, "K8S_POD_NAMESPACE=", 18)) return strndup(p + 18, n - 18);
    p += n + (end ? 1 : 0);
  }
  return NULL;
}

static bool namespace_excluded(const conf_t *c, const char *ns) {
  if (!ns) return false;
  if (!c->exclude.s) return !strcmp(ns, "kube-system");
  const char *p = ws(c->exclude.s, c->exclude.end), *e = c->exclude.end;
  if (p >= e || *p != '[') return false;
  p = ws(p + 1, e);
  while (p < e && *p == '"') {
    span_t item = {p, skip_string(p, e)};
    if (!item.end) return false;
    char *s = plain_string(item);
    bool hit = s && !strcmp(s, ns);
    free(s);
    if (hit) return true;
    p = ws(item.end, e);
    if (p < e && *p == ',') p = ws(p + 1, e);
  }
  return false;
}

int main(void) {
  const char *command = getenv("CNI_COMMAND");
  buf_t in = {0};
  for (;;) {
    buf_reserve(&in, 65536);
    ssize_t n = read(0, in.p + in.len, 65536);
    if (n < 0) { if (errno == EINTR) continue; break; }
    if (n == 0) break;
    in.len += (size_t)n;
    if (in.len > MAX_STDIN) {
      char got[64];
      snprintf(got, sizeof got, "received %zu bytes or more", in.len);
      return cni_error(4, "stdin: network configuration larger than the CNI input limit of 8388608 bytes (8 MiB)", got);
    }
  }
  if (!in.p) buf_reserve(&in, 1);
  in.p[in.len] = 0;

  conf_t conf = scan_conf(in.p, in.len);
  char *v = conf.valid ? plain_string(conf.cni_version) : NULL;
  if (supported(v)) answer_version = v;

  if (command && !strcmp(command, "VERSION")) return print_version(&conf);
  if (!command || !*command) return cni_error(4, "CNI_COMMAND: missing", "set CNI_COMMAND to ADD, DEL, CHECK, STATUS, GC or VERSION");
  bool is_add = !strcmp(command, "ADD"), is_del = !strcmp(command, "DEL"), is_check = !strcmp(command, "CHECK");
  if (!conf.valid) {
    if (is_del) { fputs("weir-cni: DEL with undecodable configuration; nothing to do\n", stderr); return 0; }
    return cni_error(6, "stdin: network configuration is not valid JSON", NULL);
  }

  char *sock = conf.agent_socket.s ? plain_string(conf.agent_socket) : strdup(DEFAULT_SOCKET);
  if (!sock || sock[0] != '/') {
    if (is_del) return 0;
    return cni_error(7, "stdin.agentSocket: must be an absolute path (a JSON string without escapes)", NULL);
  }
  int timeout_ms = DEFAULT_TIMEOUT_MS;
  if (conf.agent_timeout.s) {
    char *end = NULL; long t = strtol(conf.agent_timeout.s, &end, 10);
    if (end != conf.agent_timeout.end || t < 1 || t > MAX_TIMEOUT_MS) {
      if (is_del) t = DEFAULT_TIMEOUT_MS;
      else return cni_error(7, "stdin.agentTimeoutMs: must be an integer between 1 and 30000", NULL);
    }
    timeout_ms = (int)t;
  }

  // Excluded namespaces never depend on the agent (kube-system must come up
  // before weir can). The version is still checked here.
  char *ns = pod_namespace();
  if ((is_add || is_check) && namespace_excluded(&conf, ns)) {
    if (validate_excluded(&conf, in.p, in.len, is_check, v)) return 1;
    if (is_add) {
      if (conf.prev_result.s) { fwrite(conf.prev_result.s, 1, (size_t)(conf.prev_result.end - conf.prev_result.s), stdout); fputc('\n', stdout); }
      else printf("{\"cniVersion\":\"%s\",\"interfaces\":[],\"ips\":[],\"dns\":{}}\n", answer_version);
    }
    return 0;
  }

  buf_t body = {0};
  exec_body(&body, in.p, in.len, NULL);
  reply_t r;
  if (agent_post(sock, "/v1/cni/exec", &body, timeout_ms, &r)) {
    fwrite(r.body.p ? r.body.p : "", 1, r.body.len, stdout);
    if (r.body.len && r.body.p[r.body.len - 1] != '\n') fputc('\n', stdout);
    return r.exit_code;
  }
  if (is_del) { fprintf(stderr, "weir-cni: DEL not confirmed by the agent (ignored; the agent's GC cleans up): %s\n", r.reason); return 0; }
  if (is_add && r.timed_out) {
    // The agent may have started programming before we gave up: ask it,
    // briefly, to undo, so a failed ADD leaves nothing behind even if the
    // runtime never sends DEL.
    buf_t undo = {0}; reply_t ur;
    exec_body(&undo, in.p, in.len, "DEL");
    (void)agent_post(sock, "/v1/cni/exec", &undo, timeout_ms < 1000 ? timeout_ms : 1000, &ur);
  }
  char msg[512];
  if (!strcmp(command, "STATUS")) {
    snprintf(msg, sizeof msg, "weir agent not available: %s", r.reason);
    return cni_error(50, msg, NULL);
  }
  snprintf(msg, sizeof msg, "weir agent at %s did not answer: %s; the runtime should retry once the weir agent is running", sock, r.reason);
  return cni_error(11, msg, NULL);
}
