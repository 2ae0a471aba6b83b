#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with CMake into build-fuzz/ (clang, ASan, UBSan), writes
# their seed corpora, and runs each for SECONDS (default 60). Prints one line per target; crash
# inputs go to build-fuzz/artifacts/, logs to build-fuzz/logs/. Exits 1 if any target failed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
out=build-fuzz
targets=(fuzz_gguf fuzz_tokenizer fuzz_sse fuzz_request fuzz_http)
# Inputs longer than this are cut: room for the make-random seeds, a few KiB for text.
declare -A max_len=([fuzz_gguf]=163840 [fuzz_tokenizer]=4096 [fuzz_sse]=4096 [fuzz_request]=4096 [fuzz_http]=4096)

# The GGUF seeds come from `microlm make-random`: the release build's, else one built here.
microlm=build/microlm
build_targets=(fuzz)
if [ ! -x "$microlm" ]; then
    microlm="$out/microlm"
    build_targets+=(microlm)
fi
cmake -S . -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
    -DMICROLM_FUZZ=ON -DMICROLM_TESTS=OFF -DMICROLM_TRAIN=OFF >/dev/null
cmake --build "$out" -j "$(nproc)" --target "${build_targets[@]}"

seeds="$out/seeds"
rm -rf "$seeds" "$out/tmp"
mkdir -p "$out/artifacts" "$out/logs" "$out/tmp"
for t in "${targets[@]}"; do mkdir -p "$seeds/$t" "$out/corpus/$t"; done

for type in q4_0 q4_1 q8_0; do
    "$microlm" make-random -o "$seeds/fuzz_gguf/tiny-$type.gguf" --shape tiny --type "$type" 2>/dev/null
done

# fuzz_tokenizer: byte 0 = tokenizer (bits 0-2) | 8 add_special | 16 parse_special | 32 render_special.
tok="$seeds/fuzz_tokenizer"
printf '\x00Hello world' >"$tok/plain"
printf '\x18<|im_start|>user\nhello there<|im_end|>\n<|im_start|>assistant\n' >"$tok/chatml"
printf "\x39 h\xc3\xa9llo  w\xc3\xb6rld 12345 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 it's" >"$tok/utf8"
printf '\x02\xff\xfe\xc0\x80\xed\xa0\x80 <tool> x\xe6\x97' >"$tok/invalid-utf8"
printf '\x13  the  <|im  <unk> 1234567 \r\n\t\n\n' >"$tok/spaces"
printf "\x24Don't  DO  it!!  I'm ok, you're 'fine' ?" >"$tok/llama3"

# fuzz_sse: byte 0 = how many piece lengths follow (low 4 bits), then the lengths, then the stream.
sse="$seeds/fuzz_sse"
printf '\x00data: {"choices":[{"delta":{"content":"Hi"}}]}\n\ndata: [DONE]\n\n' >"$sse/openai"
printf '\x03\x01\x07\x02: keep-alive\r\ndata:a\r\ndata: b\r\n\r\nevent: x\rdata: c\r\r' >"$sse/crlf"
printf '\x01\x05id: 1\nretry: 10\ndata\ndata:\n\ndata: no blank line at the end' >"$sse/fields"

req="$seeds/fuzz_request"
cat >"$req/chat" <<'EOF'
{"model": "microlm", "stream": true, "max_tokens": 64, "temperature": 0.7, "top_p": 0.9, "seed": 42, "n": 1,
 "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]}
EOF
cat >"$req/continue" <<'EOF'
{"messages": [{"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
              {"role": "user", "content": null}, {"role": "assistant", "content": "The"}],
 "continue_final_message": true, "add_generation_prompt": false, "max_completion_tokens": 1.0,
 "microlm": {"modality": "speech", "cloud_delay_ms": 100}, "stop": ["\n", "END"]}
EOF
cat >"$req/bad-types" <<'EOF'
{"messages": [{"role": "tool", "content": 1}], "max_tokens": 1e400, "seed": 18446744073709551615,
 "temperature": "hot", "stream": "yes"}
EOF
cat >"$req/bad-parts" <<'EOF'
{"messages": [{"role": "user", "content": [{"type": 1, "text": "a"}, {"type": "image"}]}],
 "seed": -9.5e18, "n": 2.5, "top_p": null, "microlm": {"modality": 0}}
EOF
printf '%s' '{"messages":[],"a":-0.0,"b":[true,{"c":"\ud83d\ude00\u0000"}]}' >"$req/empty"
printf '%s' '[{"messages":"\ud800"}' >"$req/not-object"
cat >"$out/request.dict" <<'EOF'
"{"
"}"
"["
"]"
":"
","
"null"
"true"
"false"
"-0.0"
"1e308"
"9223372036854775807"
"18446744073709551616"
"\\u0000"
"\\ud800"
"\"messages\""
"\"role\""
"\"content\""
"\"user\""
"\"system\""
"\"assistant\""
"\"developer\""
"\"type\""
"\"text\""
"\"stream\""
"\"max_tokens\""
"\"max_completion_tokens\""
"\"temperature\""
"\"top_p\""
"\"seed\""
"\"n\""
"\"continue_final_message\""
"\"add_generation_prompt\""
EOF
# fuzz_http: byte 0 = limits (bit 0: 64-byte body cap, bit 1: 128-byte header cap) | arrival
# piece length - 1 (bits 2-7); then what the client sends on one connection.
web="$seeds/fuzz_http"
printf '\xfcGET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n' >"$web/pipelined"
printf '\x04POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\n2;ext=1\r\n1}\r\n0\r\nTrailer: t\r\n\r\n' >"$web/chunked"
printf '\x00POST /x HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' >"$web/smuggle"
printf '\x08POST /x?a=%%41 HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\nContent-Encoding: gzip\r\n\r\nabc' >"$web/gzip-bad"
printf '\x00GET /x%%0d%%0aFORGED%%zz HTTP/1.1\r\nRange: bytes=0-,0-\r\nAuthorization: Bearer a\x00b\r\n\r\n' >"$web/controls"
printf '\x00GET http://evil/ HTTP/1.1\r\n\r\nGET * HTTP/1.1\r\n\r\n' >"$web/absolute"
printf 'POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 20\r\nContent-Encoding: gzip\r\n\r\n' >"$web/gzip-head"
printf '\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xabV\xcaM-.NLOU\xb2RP\xaa\x05\x00\x8d\x8b\x0f\x88\x0c\x00\x00\x00' >>"$web/gzip-head"
declare -A dict=([fuzz_request]="$out/request.dict")

export TMPDIR="$PWD/$out/tmp" UBSAN_OPTIONS=print_stacktrace=1
failed=0
for t in "${targets[@]}"; do
    log="$out/logs/$t.log"
    args=(-max_total_time="$seconds" -max_len="${max_len[$t]}" -rss_limit_mb=4096 -timeout=30
          -print_final_stats=1 -artifact_prefix="$out/artifacts/$t-")
    [ -n "${dict[$t]:-}" ] && args+=(-dict="${dict[$t]}")
    start=$SECONDS
    if "$out/fuzz/$t" "${args[@]}" "$out/corpus/$t" "$seeds/$t" >"$log" 2>&1; then
        result=ok
    else
        failed=1
        what=$(grep -m1 -E '^terminate called|runtime error:|^SUMMARY: ' "$log" | sed 's/^SUMMARY: //') || true
        input=$(grep -o 'Test unit written to .*' "$log" | tail -1 | sed 's/^Test unit written to //' || true)
        result="FAILED: ${what:-see the log} (input ${input:-none}, log $log)"
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    [ -n "$execs" ] || execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#' || true)
    printf '%-15s %10s execs %5s s  %s\n' "$t" "${execs:-?}" "$((SECONDS - start))" "$result"
done
exit "$failed"
