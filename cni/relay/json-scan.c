// Spans over the network configuration (stdin) without building a tree:
// enough for the few fields the relay itself needs. Full validation of the
// conf happens in the agent (src/cni/conf.ts).
#define _GNU_SOURCE
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "relay.h"

const char *ws(const char *p, const char *e) { while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++; return p; }

const char *skip_string(const char *p, const char *e) {
  if (p >= e || *p != '"') return NULL;
  for (p++; p < e; p++) {
    if (*p == '\\') { if (++p >= e) return NULL; }
    else if (*p == '"') return p + 1;
    else if ((unsigned char)*p < 0x20) return NULL;
  }
  return NULL;
}

const char *skip_value(const char *p, const char *e, int depth) {
  if (depth > 256) return NULL;
  p = ws(p, e);
  if (p >= e) return NULL;
  if (*p == '"') return skip_string(p, e);
  if (*p == '{' || *p == '[') {
    char close = *p == '{' ? '}' : ']';
    bool object = *p == '{';
    p = ws(p + 1, e);
    if (p < e && *p == close) return p + 1;
    for (;;) {
      if (object) { p = skip_string(ws(p, e), e); if (!p) return NULL; p = ws(p, e); if (p >= e || *p != ':') return NULL; p++; }
      p = skip_value(p, e, depth + 1); if (!p) return NULL;
      p = ws(p, e);
      if (p < e && *p == ',') { p++; continue; }
      if (p < e && *p == close) return p + 1;
      return NULL;
    }
  }
  const char *start = p;
  while (p < e && (strchr("+-.0123456789eE", *p) || (*p >= 'a' && *p <= 'z'))) p++;
  if (p == start) return NULL;
  size_t n = (size_t)(p - start);
  if ((*start >= 'a' && *start <= 'z') && !((n == 4 && !memcmp(start, "true", 4)) || (n == 5 && !memcmp(start, "false", 5)) || (n == 4 && !memcmp(start, "null", 4)))) return NULL;
  return p;
}

bool key_is(span_t k, const char *name) { size_t n = strlen(name); return (size_t)(k.end - k.s) == n + 2 && !memcmp(k.s + 1, name, n); }

conf_t scan_conf(const char *s, size_t n) {
  conf_t c; memset(&c, 0, sizeof c);
  const char *p = ws(s, s + n), *e = s + n;
  if (p >= e || *p != '{') return c;
  p = ws(p + 1, e);
  if (p < e && *p == '}') { c.valid = ws(p + 1, e) == e; return c; }
  for (;;) {
    span_t k = {ws(p, e), NULL};
    k.end = skip_string(k.s, e); if (!k.end) return c;
    p = ws(k.end, e); if (p >= e || *p != ':') return c;
    span_t v = {ws(p + 1, e), NULL};
    v.end = skip_value(v.s, e, 0); if (!v.end) return c;
    if (key_is(k, "cniVersion")) c.cni_version = v;
    else if (key_is(k, "agentSocket")) c.agent_socket = v;
    else if (key_is(k, "agentTimeoutMs")) c.agent_timeout = v;
    else if (key_is(k, "excludeNamespaces")) c.exclude = v;
    else if (key_is(k, "prevResult")) c.prev_result = v;
    p = ws(v.end, e);
    if (p < e && *p == ',') { p++; continue; }
    if (p < e && *p == '}') { c.valid = ws(p + 1, e) == e; return c; }
    return c;
  }
}

// Decodes a JSON string span without escapes (paths, versions, namespaces
// never need them); returns NULL for anything else.
char *plain_string(span_t v) {
  if (!v.s || v.end - v.s < 2 || *v.s != '"') return NULL;
  size_t n = (size_t)(v.end - v.s - 2);
  if (memchr(v.s + 1, '\\', n)) return NULL;
  return strndup(v.s + 1, n);
}
// The value of `key` in the JSON object spanned by obj (top level only).
span_t object_get(span_t obj, const char *key) {
  span_t none = {NULL, NULL};
  const char *p = ws(obj.s, obj.end), *e = obj.end;
  if (p >= e || *p != '{') return none;
  p = ws(p + 1, e);
  while (p < e && *p == '"') {
    span_t k = {p, skip_string(p, e)};
    if (!k.end) return none;
    p = ws(k.end, e); if (p >= e || *p != ':') return none;
    span_t v = {ws(p + 1, e), NULL};
    v.end = skip_value(v.s, e, 0); if (!v.end) return none;
    if (key_is(k, key)) return v;
    p = ws(v.end, e);
    if (p < e && *p == ',') p = ws(p + 1, e);
  }
  return none;
}

bool span_is(span_t v, char c) { return v.s && v.s < v.end && *v.s == c; }
bool span_null(span_t v) { return v.s && v.end - v.s == 4 && !memcmp(v.s, "null", 4); }
