-- description: Events and minutes watched per channel in the window (a template over org B's streamed media_events).
-- param: window_start TIMESTAMP
-- param: window_end TIMESTAMP
SELECT e.channel, COUNT(*) AS events, SUM(e.watch_minutes) AS minutes
FROM media_events e
WHERE e.event_time >= :window_start AND e.event_time < :window_end
GROUP BY e.channel
