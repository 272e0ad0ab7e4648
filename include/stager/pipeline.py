"""Where a stager job lives in Airflow: the DAG ids, task ids and XCom keys, named once.

A job is a run of :data:`TRANSFER_DAG_ID`; its tasks are :data:`VALIDATE_TASK` and
:data:`TRANSFER_TASK`. The DAG files name their tasks with these constants, and so does the code
that must find a run's data from outside the DAG:

- the stager API (``sensitive_data.stager_api.runs``) reads a job's status (XCom
  :data:`PROGRESS_KEY` and :data:`ERROR_KEY` of these tasks) from Airflow's metadata database
  while the run is going on or long after it ended. It is not a task of the DAG, so it cannot
  receive an ``XComArg``: it must name the task whose XCom it reads, and names it here;
- the e-mail notifier gets the tasks whose :data:`ERROR_KEY` it quotes as an argument from the
  DAG file (``StagerNotifier(error_tasks=...)``), which takes them from here.

Renaming a task is then one change here, which every reader follows.
"""

from __future__ import annotations

TRANSFER_DAG_ID = "data_stager_transfer"
STREAMER_DAG_ID = "data_stager_streamer"

VALIDATE_TASK = "validate"
TRANSFER_TASK = "transfer"

# XCom keys of the job status channel (pushed by the transfer tasks, read by the API and the mail)
PROGRESS_KEY = "progress"
ERROR_KEY = "error"
# XCom key of the streamer's ``resolve`` task: the run id its transfer job was sealed for
RUN_ID_KEY = "run_id"
