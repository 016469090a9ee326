-- Bulk load for examples/spend_bench.rs (--bulk): :n usage records spread evenly over the 30
-- days from :'start', generated in SQL for the keys, teams and customers the example created
-- (key `5000·u²` for a uniform u; each key mostly one of four models; 2 % refused by a rate
-- limit, 3 % upstream errors, 5 % unpriced; every tenth key a user's personal key), then the
-- rollups built with migration 0015's backfill statements (appended by the example).
TRUNCATE usage_records, usage_rollup_hourly, usage_rollup_daily;
INSERT INTO usage_records (request_id, virtual_key_id, provider, model_requested, model_resolved,
    provider_key_id, input_tokens, output_tokens, cache_read_input_tokens,
    cache_write_input_tokens, latency_ms, time_to_first_token_ms, status, error_class, started_at,
    stream, cache_write_1h_input_tokens, cost_nano_usd, fallback_index, attempts, team_id,
    customer_id, user_id)
SELECT 'b-' || x.i, o.ids[x.k + 1], m.provider, m.model, m.model, 'pk-1',
       500 + floor(x.v * 5000), 50 + floor(x.w * 800), floor(x.w * 3) * 1000, floor(x.v * 2) * 500,
       800 + floor(x.w * 4000), 300,
       CASE WHEN x.s < 0.02 THEN 429 WHEN x.s < 0.05 THEN 502 ELSE 200 END,
       CASE WHEN x.s < 0.02 THEN 'rate_limited' WHEN x.s < 0.05 THEN 'upstream_error' ELSE '' END,
       :'start'::timestamptz + make_interval(secs => x.i * 2592000.0 / :n),
       true, 0,
       CASE WHEN x.c < 0.05 THEN NULL ELSE 2000000 + floor(x.c * 30000000) END,
       0, NULL, o.teams[x.k + 1], o.customers[x.k + 1],
       CASE WHEN x.k % 10 = 0 THEN md5('user-' || x.k)::uuid END
FROM (SELECT i, floor(5000 * u * u)::int AS k, v, w, s, c, mr
      FROM (SELECT i, random() AS u, random() AS v, random() AS w, random() AS s,
                   random() AS c, random() AS mr
            FROM generate_series(0, :n - 1) AS i) r) x
CROSS JOIN (SELECT array_agg(CAST(vk.id AS TEXT) ORDER BY CAST(substr(vk.name, 5) AS INT)) AS ids,
                   array_agg(vk.team_id ORDER BY CAST(substr(vk.name, 5) AS INT)) AS teams,
                   array_agg(t.customer_id ORDER BY CAST(substr(vk.name, 5) AS INT)) AS customers
            FROM virtual_keys vk JOIN teams t ON t.id = vk.team_id) o
JOIN (VALUES (0, 'claude-sonnet-4-6', 'bedrock'), (1, 'claude-haiku-4-5', 'bedrock'),
             (2, 'gpt-4o', 'openai'), (3, 'gemini-2.5-pro', 'vertex')) AS m (n, model, provider)
  ON m.n = CASE WHEN x.mr < 0.8 THEN x.k % 4 ELSE floor((x.mr - 0.8) * 20)::int END;
