import InterlockPostgres
import Interlock
print("x")
