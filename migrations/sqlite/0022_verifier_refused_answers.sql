-- Answers to a presentation request that were not its holder's signed answer (unsigned,
-- signed by a key of another DID, or made for another request): refused, counted, and the
-- request left open for its holder.
ALTER TABLE verifier_requests ADD COLUMN refused_answers BIGINT NOT NULL DEFAULT 0;
