-- Runs once, when the postgres volume is created: the metadata database is POSTGRES_DB (airflow);
-- the EGA node's database is lega (connection lega_db; its tables are created by the pipeline).
CREATE DATABASE lega;
