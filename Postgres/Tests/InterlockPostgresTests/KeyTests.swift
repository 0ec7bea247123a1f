import InterlockPostgres
import Testing

@Suite("Advisory keys")
struct KeyTests {
    @Test("a name's key is the documented SHA-256 formula, as the server computes it")
    func nameHashMatchesServer() async throws {
        for name in ["jobs", "reports.daily", "é", "e\u{301}", String(repeating: "x", count: 5000)] {
            let key = try AdvisoryKey(name: name)
            let server = try await TestServer.withConnection { connection in
                try await connection.query("""
                    SELECT ('x' || left(encode(sha256(convert_to('interlock:' || \(name), 'UTF8')), 'hex'), 16))::bit(64)::bigint
                    """, logger: TestServer.logger).collect().first?.decode(Int64.self)
            }
            #expect(key.rawValue == server, "\(name.prefix(20))")
        }
        // Bytes, not Unicode equivalence: two spellings of é are two locks.
        #expect(try AdvisoryKey(name: "é") != AdvisoryKey(name: "e\u{301}"))
    }

    @Test("a fixed name keeps its key across versions")
    func stableValue() throws {
        // If this changes, every deployed lock changes identity: never change the formula.
        #expect(try AdvisoryKey(name: "jobs").rawValue == 7_786_463_780_017_238_348)
    }

    @Test("classID and objectID are the halves pg_locks shows")
    func halves() {
        let key = AdvisoryKey(-2)
        #expect(key.classID == 0xFFFF_FFFF)
        #expect(key.objectID == 0xFFFF_FFFE)
        #expect(AdvisoryKey(0x1_0000_0002).classID == 1)
        #expect(AdvisoryKey(0x1_0000_0002).objectID == 2)
    }

    @Test("an empty name is a typed error")
    func emptyName() throws {
        #expect(throws: PostgresLockError.invalidName("", reason: "a lock name cannot be empty")) {
            try AdvisoryKey(name: "")
        }
        #expect(throws: PostgresLockError.self) {
            try PostgresSharedLock(name: "", configuration: TestServer.configuration())
        }
    }
}
