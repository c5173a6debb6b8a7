#include <doctest/doctest.h>

#include "base/bytes.h"
#include "base/types.h"

using namespace rpool;

TEST_CASE("byte writer and reader round-trip every width, little-endian") {
  Bytes buf;
  ByteWriter w(buf);
  w.u8(0xab);
  w.u16(0x1234);
  w.u32(0xdeadbeef);
  w.u64(0x0102030405060708ULL);
  w.i64(-1);
  w.str8("gold");
  w.bytes32(as_bytes("xyz"));
  CHECK(buf[1] == 0x34);  // little-endian
  CHECK(buf[2] == 0x12);

  ByteReader r(buf);
  CHECK(r.u8() == 0xab);
  CHECK(r.u16() == 0x1234);
  CHECK(r.u32() == 0xdeadbeef);
  CHECK(r.u64() == 0x0102030405060708ULL);
  CHECK(r.i64() == -1);
  CHECK(r.str8() == "gold");
  CHECK(as_chars(r.bytes32()) == "xyz");
  CHECK(r.at_end());
}

TEST_CASE("a reader past the end fails and stays failed") {
  const Bytes buf = {1, 2, 3};
  ByteReader r(buf);
  CHECK(r.u16() == 0x0201);
  CHECK(r.u32() == 0);
  CHECK_FALSE(r.ok());
  CHECK(r.u8() == 0);  // even though one byte is left
  CHECK_FALSE(r.ok());
  CHECK_FALSE(r.at_end());
}

TEST_CASE("a length prefix longer than the input fails cleanly") {
  Bytes buf;
  ByteWriter w(buf);
  w.u32(1000);
  w.u8(7);
  ByteReader r(buf);
  CHECK(r.bytes32().empty());
  CHECK_FALSE(r.ok());
}

TEST_CASE("strong integers order, offset and format") {
  const LogIndex a(5);
  CHECK(a.next() == LogIndex(6));
  CHECK(a + 3 == LogIndex(8));
  CHECK(LogIndex(9) - a == 4u);
  CHECK(a < LogIndex(6));
  CHECK(fmt::format("{}", Term(7)) == "7");
}
