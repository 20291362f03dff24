-- PostgreSQL keeps the queue totals per statement from here on (0029 there). SQLite has
-- only row triggers (0016), which cost no round trip: nothing changes here.
SELECT 1;
