-- slow_queries was never written: `db slow-queries` reads pg_stat_statements or the db.slow_query_ms metric.
DROP TABLE IF EXISTS slow_queries;
