-- wrk script: POST /tasks with a JSON body (the same request for Offload and the baseline)
wrk.method = "POST"
wrk.body = '{"name": "add", "args": [2, 3]}'
wrk.headers["Content-Type"] = "application/json"
