-- wrk script for the load benchmark's DPoP variant (benches/load.sh, target authgate-dpop):
-- every request carries `Authorization: DPoP <token>` and the next unused proof from a file
-- that benches/dpop_proofs.py wrote just before (wrk's Lua cannot sign ES256). A proof is
-- sent once, never again: the gateway refuses a replayed `jti`, and a reused proof would
-- measure the refusal instead of the check.
--
-- Environment (set by load.sh; measure.py runs wrk with it):
--   DPOP_PROOFS   the proofs, one per line, all of one length (so proof k is at k * length)
--   DPOP_TOKEN    the access token they are bound to (`ath`)
--   DPOP_STATE    how far each thread got in the file: the warm-up, the measurement and a
--                 re-measurement each run wrk afresh, and each goes on where the one before
--                 stopped
--   DPOP_LOG      one JSON line per wrk run is appended here (proofs used, threads that ran out)
--   DPOP_THREADS  wrk's -t (threads start before all of them are set up: the stride is needed
--                 up front)
--   BENCH_REPORT_LUA  the harness's lib/report.lua: its done() prints the BENCHJSON line
--
-- wrk runs one Lua state per thread. Thread i of T takes blocks i, i + T, i + 2T, ... of
-- BLOCK proofs each (its lane), and the next wrk run's thread i goes on in the same lane. A
-- thread that finds its lane at the end of the file does not reuse a proof: it stops
-- (wrk.thread:stop(); a request it writes before its loop ends goes without a proof, to be
-- refused), and done() logs `ran_out`, which benches/load_report.py reports: such a run
-- measured fewer requests than it ran for, and its rate is not a result.

dofile(assert(os.getenv("BENCH_REPORT_LUA"), "BENCH_REPORT_LUA not set"))
local report_done = done

local BLOCK = 256
local proofs_path = assert(os.getenv("DPOP_PROOFS"), "DPOP_PROOFS not set")
local state_path = assert(os.getenv("DPOP_STATE"), "DPOP_STATE not set")
local nthreads = assert(tonumber(os.getenv("DPOP_THREADS")), "DPOP_THREADS not set")

-- === main state: hands out thread ids and the start; sums up in done() ===

local threads = {}
local base, lanes  -- the file's first proof of lane block 0; blocks each lane has taken

local function read_state()  -- "FIRST T BLOCKS_0 ... BLOCKS_T-1", or nothing before the first run
  local nums, f = {}, io.open(state_path, "r")
  if f then
    for n in f:read("*a"):gmatch("%d+") do nums[#nums + 1] = tonumber(n) end
    f:close()
  end
  base, lanes = nums[1] or 0, {}
  local t = nums[2] or nthreads
  for i = 1, t do lanes[i] = nums[2 + i] or 0 end
  if t ~= nthreads then  -- another stride: start behind the furthest lane
    base = base + math.max(0, unpack(lanes)) * t * BLOCK
    lanes = {}
  end
  for i = 1, nthreads do lanes[i] = lanes[i] or 0 end
end

function setup(thread)
  -- more threads than the stride would hand the same blocks to two of them
  assert(#threads < nthreads, "more wrk threads than DPOP_THREADS")
  if not base then read_state() end
  thread:set("id", #threads)
  thread:set("first", base)
  thread:set("blocks", lanes[#threads + 1])
  table.insert(threads, thread)
end

-- === each thread's state ===
-- Globals (id, first, blocks from setup; used, ran_out), not locals, where setup() and done()
-- reach them: thread:set() and thread:get() see a thread's globals only.

local f, reclen, count, data, nblock, pos

function init(args)
  f = assert(io.open(proofs_path, "rb"))
  local line = assert(f:read("*l"), "no proofs in " .. proofs_path)
  reclen = #line + 1
  count = math.floor(f:seek("end") / reclen)
  nblock, pos = 0, 0
  used, ran_out = 0, 0  -- (blocks: set by setup)
  wrk.headers["Authorization"] = "DPoP " .. assert(os.getenv("DPOP_TOKEN"), "DPOP_TOKEN not set")
end

local function next_block()  -- this thread's next block, false if the file has none left
  local at = first + (blocks * nthreads + id) * BLOCK
  if at >= count then return false end
  nblock = math.min(BLOCK, count - at)
  f:seek("set", at * reclen)
  data = f:read(nblock * reclen)
  blocks, pos = blocks + 1, 0
  return true
end

function request()
  if pos >= nblock and not next_block() then
    -- stop every time: a stop before the event loop runs (wrk's first call, which checks the
    -- request) is forgotten when the loop starts
    ran_out = ran_out + 1
    wrk.thread:stop()
    wrk.headers["DPoP"] = nil
    return wrk.format()
  end
  local at = pos * reclen
  pos, used = pos + 1, used + 1
  wrk.headers["DPoP"] = data:sub(at + 1, at + reclen - 1)
  return wrk.format()
end

-- === main state again, after every thread has finished ===

function done(summary, latency, requests)
  report_done(summary, latency, requests)
  local used, ran_out = 0, 0
  for i, t in ipairs(threads) do
    lanes[i] = t:get("blocks")
    used = used + t:get("used")
    ran_out = ran_out + t:get("ran_out")
  end
  local state = assert(io.open(state_path, "w"))
  state:write(base, " ", nthreads, " ", table.concat(lanes, " "), "\n")
  state:close()
  local line = string.format(
    '{"threads":%d,"used":%d,"ran_out":%d,"requests":%d,"blocks":[%s],"time":%d}',
    #threads, used, ran_out, summary.requests, table.concat(lanes, ","), os.time())
  local log = assert(io.open(assert(os.getenv("DPOP_LOG"), "DPOP_LOG not set"), "a"))
  log:write(line, "\n")
  log:close()
  io.write("DPOP ", line, "\n")
end
