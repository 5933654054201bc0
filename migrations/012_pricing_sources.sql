-- Prices from a maintained source (genai-prices) next to local ones (the price file, rows an operator
-- inserts). model_pricing records every price the receiver may apply, versioned by date and by source,
-- so a stored cost can be explained: which source, which package version, which matching rule.
-- A local price and the maintained source's price of the same model and date are two rows (the local
-- one wins when the receiver prices a span), hence the source in the primary key.
ALTER TABLE model_pricing
    ADD COLUMN source_version               text,
    ADD COLUMN match_rule                   text,
    ADD COLUMN reasoning_price_per_million  numeric CHECK (reasoning_price_per_million >= 0),
    ADD COLUMN price_per_thousand_requests  numeric CHECK (price_per_thousand_requests >= 0),
    ADD COLUMN other_prices                 jsonb;

ALTER TABLE model_pricing DROP CONSTRAINT model_pricing_pkey;
ALTER TABLE model_pricing ADD PRIMARY KEY (provider, model, effective_date, source);

COMMENT ON TABLE model_pricing IS
    'USD per million tokens. source: genai-prices (seeded from the installed package at start-up and SIGHUP), '
    'file (pricing.file), or anything else an operator inserts; local rows win over genai-prices rows';
COMMENT ON COLUMN model_pricing.source_version IS 'version of the source, e.g. the genai-prices package version';
COMMENT ON COLUMN model_pricing.match_rule IS 'genai-prices: the model names this price matches';
COMMENT ON COLUMN model_pricing.other_prices IS
    'prices with no column (threshold tiers, audio, images, web searches, time-of-day prices), as text';
COMMENT ON COLUMN llm_traces.cost_source IS
    'span: cost attributes on the span; pricing: tokens x model_pricing; unpriced: tokens but no price '
    '(a zero cost on a call with tokens counts as unpriced)';
COMMENT ON COLUMN llm_traces.input_tokens IS
    'every input token, cache reads and cache writes included (whatever the instrumentation reported)';
COMMENT ON COLUMN llm_traces.output_tokens IS 'every output token, reasoning tokens included';
COMMENT ON COLUMN llm_traces.cache_read_tokens IS 'input tokens read from the prompt cache (part of input_tokens)';
COMMENT ON COLUMN llm_traces.cache_creation_tokens IS 'input tokens written to the prompt cache (part of input_tokens)';
COMMENT ON COLUMN llm_traces.reasoning_tokens IS 'reasoning output tokens (part of output_tokens)';
