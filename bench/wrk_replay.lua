-- wrk script: send each request of a prepared file once, spread over wrk's threads.
-- Usage: wrk -s wrk_replay.lua <url> -- <requests file> <threads>
-- One request per line, tab-separated: METHOD, PATH, BODY, then "Name: value" headers.
-- If a thread runs out of lines it starts over and counts a wrap: the caller treats
-- any wrap as a broken run (repeated callbacks would be cheap duplicates).

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local path, nthreads = args[1], tonumber(args[2])
  requests, cursor, wraps = {}, 0, 0
  local line_no = 0
  for line in io.lines(path) do
    if line_no % nthreads == id then
      local fields = {}
      for field in string.gmatch(line, "[^\t]+") do table.insert(fields, field) end
      local headers = {}
      for i = 4, #fields do
        local name, value = string.match(fields[i], "^([^:]+):%s*(.*)$")
        headers[name] = value
      end
      table.insert(requests, wrk.format(fields[1], fields[2], headers, fields[3]))
    end
    line_no = line_no + 1
  end
end

function request()
  cursor = cursor + 1
  if cursor > #requests then
    cursor, wraps = 1, wraps + 1
  end
  return requests[cursor]
end

function done(summary, latency, _)
  local wrapped = 0
  for _, thread in ipairs(threads) do wrapped = wrapped + thread:get("wraps") end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "wraps": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    wrapped, latency:percentile(50), latency:percentile(99)))
end
