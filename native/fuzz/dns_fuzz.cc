// libFuzzer target for the DNS fast path's packet code (dns_fast.cc): the
// query parser every datagram on 15053 meets, the TTL walker over upstream
// answers, and the answer table that patches a stored answer for a new
// query. Properties besides memory safety: offsets stay inside the packet,
// an answer fits the client's UDP size and carries the query's ID and
// question, and a stored answer is found again by the query it was stored for.
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../src/dns_fast.h"
#include "../src/mono_clock.h"

using namespace weir;

namespace {
void Check(bool ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "property violated: %s\n", what);
    abort();
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  // Layout: [query length][query][response]. The query length byte lets the
  // fuzzer move the split; both halves are hostile.
  size_t qlen = std::min<size_t>(data[0], size - 1);
  const uint8_t* query = data + 1;
  const uint8_t* response = query + qlen;
  size_t rlen = size - 1 - qlen;

  std::string key;
  FastQuery q;
  if (ParseFastQuery(query, qlen, &key, &q)) {
    Check(q.question_end >= 12 + 5 && q.question_end <= qlen, "question inside the query");
    Check(q.udp_limit >= 512, "UDP limit at least 512");
    Check(!key.empty(), "key for a parsed query");
  }
  std::vector<uint32_t> offsets;
  if (FindTtlOffsets(response, rlen, &offsets))
    for (uint32_t o : offsets) Check(o + 4 <= rlen, "TTL offset inside the response");

  AnswerTable table(4);
  bool stored = table.Put(query, qlen, response, rlen, 1000, (data[0] & 1) ? FastKind::kCached : FastKind::kLocal);
  uint8_t out[kFastMaxAnswer];
  FastKind kind;
  uint16_t qtype = 0;
  const int64_t now = NowMs();
  size_t n = table.Answer(query, qlen, out, now, &key, &kind, &qtype);
  if (n > 0) {
    Check(stored, "an answer only for a stored question");
    Check(n <= kFastMaxAnswer && n <= q.udp_limit, "answer within the client's UDP size");
    Check(out[0] == query[0] && out[1] == query[1], "answer carries the query's ID");
    Check(n >= q.question_end && memcmp(out + 12, query + 12, q.question_end - 12) == 0, "answer carries the query's question");
  }
  // Expired: never answered.
  Check(table.Answer(query, qlen, out, now + 5000, &key, &kind, &qtype) == 0, "no answer after expiry");
  return 0;
}
