"""calculator: the value of an arithmetic expression, read by a parser, never eval.

Python's own parser (`ast`) reads the expression; only numbers, + - * / // % ** (and ^
for **), unary minus, parentheses, the constants pi and e and the functions in
FUNCTIONS are evaluated. Anything else (names, attributes, strings, lists, lambdas,
comprehensions) is refused with a sentence naming it, so no expression reaches Python.

Decimal, not float: people ask for money and rates, and the reference's own example is
revenue figures. In binary floating point 0.1 + 0.2 is 0.30000000000000004 and
round(2.675, 2) is 2.67; in Decimal they are 0.3 and 2.68, as a person or a spreadsheet
computes them. Every step is computed to PRECISION significant digits (exact below
that, rounded past it, like a pocket calculator), which also bounds the cost of each
step: the cost of a Decimal operation depends on the precision, not on the numbers.
sin, cos and tan go through float (Decimal has none) and keep 15 digits.

Limits, all checked before the work they guard, so that a hostile expression is refused
in well under a millisecond: MAX_CHARS characters, parentheses MAX_PARENTHESES deep, an
integer exponent of at most MAX_EXPONENT, and no number (literal, intermediate or
result) at or past 10^MAX_DIGITS: a power or a factorial is refused from an estimate of
its size, never computed first. So 9**9**9, 10**10**10 and factorial(10**6) are
sentences, not a hung server.
"""

from __future__ import annotations

import ast
import math
from decimal import (
    ROUND_CEILING,
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    Underflow,
    localcontext,
)

from chat.tools.registry import Tool, ToolError

MAX_CHARS = 500
MAX_PARENTHESES = 30
MAX_EXPONENT = 10_000
MAX_DIGITS = 100  # every number stays below 10^100 in size
PRECISION = 28
LIMIT = Decimal(10) ** MAX_DIGITS
# Emax/Emin far beyond LIMIT: an overflow trap is a second line behind the size checks;
# Underflow is trapped so that a result too small to hold is a sentence, not a silent 0.
CONTEXT = Context(prec=PRECISION, rounding=ROUND_HALF_EVEN, Emax=999, Emin=-999,
                  traps=[InvalidOperation, DivisionByZero, Overflow, Underflow])
FLOAT_DIGITS = Context(prec=15)

# With more digits than PRECISION: an operand keeps all its digits, so ln(e) is 1 and
# not 0.99…9 (each result is still rounded to PRECISION).
with localcontext(CONTEXT) as _wider:
    _wider.prec = PRECISION + 12
    CONSTANTS = {"pi": Decimal("3.1415926535897932384626433832795028841972"), "e": Decimal(1).exp()}

# Written the way people do and models sometimes do.
SPELLINGS = {"^": "**", "×": "*", "÷": "/", "−": "-"}

KNOWS = ("numbers, + - * / // % ** (or ^), parentheses, pi, e and the functions "
         "sqrt, abs, round, floor, ceil, ln, log, log10, exp, sin, cos, tan, min, max and factorial")

NOT_ARITHMETIC = {
    ast.Attribute: "attributes (a dot after a name)", ast.Subscript: "indexing with [ ]",
    ast.List: "lists", ast.Tuple: "several values (commas)", ast.Set: "sets", ast.Dict: "dictionaries",
    ast.Compare: "comparisons", ast.BoolOp: "and/or", ast.Lambda: "lambda", ast.IfExp: "if/else",
    ast.ListComp: "comprehensions", ast.GeneratorExp: "comprehensions", ast.JoinedStr: "strings",
    ast.NamedExpr: "assignments (:=)", ast.Starred: "unpacking (*)",
}


def calculate(expression: str) -> dict[str, str]:
    source = expression.strip()
    for written, meant in SPELLINGS.items():
        source = source.replace(written, meant)
    if not source:
        raise ToolError("The expression is empty; write one, e.g. (29.12 - 28.89) / 28.89 * 100.")
    if len(source) > MAX_CHARS:
        raise ToolError(f"The expression is {len(source):,} characters long; the calculator takes at most "
                        f"{MAX_CHARS}. Split it into smaller calculations.")
    _parentheses_check(source)
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError) as error:
        reason = getattr(error, "msg", None) or str(error)
        raise ToolError(f"{_quoted(expression)} is not an arithmetic expression the calculator can read "
                        f"({reason}); it knows {KNOWS}.") from None
    with localcontext(CONTEXT):
        try:
            value = _Evaluation(source).value(tree.body)
        except RecursionError:
            raise ToolError(f"{_quoted(expression)} nests operations too deeply; split it into smaller "
                            "calculations.") from None
    return {"expression": expression, "result": _text(value)}


def _parentheses_check(source: str) -> None:
    depth = deepest = 0
    for character in source:
        if character == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif character == ")":
            depth -= 1
    if deepest > MAX_PARENTHESES:
        raise ToolError(f"The expression nests parentheses {deepest} deep; the calculator takes at most "
                        f"{MAX_PARENTHESES}.")


class _Evaluation:
    """One expression's evaluation: the source is kept to quote the part that failed."""

    def __init__(self, source: str):
        self.source = source

    def value(self, node: ast.expr) -> Decimal:
        try:
            if isinstance(node, ast.Constant):
                return self._checked(node, self._literal(node))
            if isinstance(node, ast.Name):
                if node.id in CONSTANTS:
                    return CONSTANTS[node.id]
                raise ToolError(f"The calculator does not know {node.id!r}; it knows {KNOWS}.")
            if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
                operand = self.value(node.operand)
                return -operand if isinstance(node.op, ast.USub) else +operand
            if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
                left, right = self.value(node.left), self.value(node.right)
                return self._checked(node, BINARY[type(node.op)](self, node, left, right))
            if isinstance(node, ast.Call):
                return self._checked(node, self._call(node))
        except DivisionByZero:
            raise ToolError(f"{self._segment(node)} divides by zero.") from None
        except Overflow:
            raise self._too_large(node, None) from None
        except Underflow:
            raise ToolError(f"{self._segment(node)} is closer to zero than the calculator can hold "
                            f"(10^{CONTEXT.Emin}).") from None
        except InvalidOperation:
            raise ToolError(f"{self._segment(node)} has no defined value.") from None
        what = NOT_ARITHMETIC.get(type(node)) or NOT_ARITHMETIC.get(type(getattr(node, "op", None)))
        what = what or f"{type(getattr(node, 'op', node)).__name__}"
        raise ToolError(f"The calculator does not do {what} ({self._segment(node)}); it knows {KNOWS}.")

    def _literal(self, node: ast.Constant) -> Decimal:
        if type(node.value) is int:
            return Decimal(node.value)
        if type(node.value) is float:
            # From the text, not the float Python read: 0.1 is then exactly 0.1, and 1e999
            # is a number too large rather than infinity.
            return Decimal(ast.get_source_segment(self.source, node))
        raise ToolError(f"The calculator takes numbers, not {type(node.value).__name__} "
                        f"({self._segment(node)}); it knows {KNOWS}.")

    def _call(self, node: ast.Call) -> Decimal:
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in FUNCTIONS or node.keywords:
            raise ToolError(f"The calculator has no function {self._segment(node.func)} (or it was given "
                            f"named arguments); it knows {KNOWS}.")
        least, most, function = FUNCTIONS[name]
        if not least <= len(node.args) <= (most or len(node.args)):
            wanted = f"{least}" if least == most else f"{least} to {most}" if most else f"at least {least}"
            plural = "" if least == 1 and most in (1, None) else "s"
            raise ToolError(f"{name} takes {wanted} argument{plural}, not {len(node.args)} "
                            f"({self._segment(node)}).")
        return function(self, node, *(self.value(argument) for argument in node.args))

    def _checked(self, node: ast.expr, value: Decimal) -> Decimal:
        if abs(value) >= LIMIT:
            raise self._too_large(node, value.adjusted())
        return value

    def _too_large(self, node: ast.expr, digits: int | None) -> ToolError:
        about = " is too large" if digits is None or digits > 10**12 else f" would be about 10^{digits:,}"
        return ToolError(f"{self._segment(node)}{about}, past the calculator's limit of 10^{MAX_DIGITS}.")

    def _segment(self, node: ast.expr) -> str:
        text = ast.get_source_segment(self.source, node) or self.source
        return _quoted(text)

    # ------------------------------------------------------------ operations

    def _power(self, node, base: Decimal, exponent: Decimal) -> Decimal:
        integral = exponent == exponent.to_integral_value()
        if integral and abs(exponent) > MAX_EXPONENT and abs(base) not in (0, 1):
            raise ToolError(f"The exponent in {self._segment(node)} is {_text(exponent)}; the calculator takes "
                            f"exponents up to {MAX_EXPONENT:,}.")
        if not integral and base < 0:
            raise ToolError(f"{self._segment(node)} has no real value: a negative number to a fractional power.")
        if exponent == 0:
            return Decimal(1)
        if base == 0:
            if exponent < 0:
                raise DivisionByZero
            return Decimal(0)
        size = exponent * abs(base).log10()
        if size >= MAX_DIGITS:
            raise self._too_large(node, int(size))
        return base**exponent

    def _floor_divide(self, node, left: Decimal, right: Decimal) -> Decimal:
        # Python's meaning (round toward minus infinity), not Decimal's (toward zero).
        if right == 0:
            raise DivisionByZero
        return (left / right).to_integral_value(rounding=ROUND_FLOOR)

    def _modulo(self, node, left: Decimal, right: Decimal) -> Decimal:
        # Python's meaning: the result has the sign of the divisor (Decimal's: of the dividend).
        if right == 0:
            raise DivisionByZero
        remainder = left % right
        if remainder and (remainder < 0) != (right < 0):
            remainder += right
        return remainder

    def _factorial(self, node, n: Decimal) -> Decimal:
        if n < 0 or n != n.to_integral_value():
            raise ToolError(f"{self._segment(node)}: factorial takes a whole number, 0 or more.")
        size = math.lgamma(float(n) + 1) / math.log(10)
        if size >= MAX_DIGITS:
            raise self._too_large(node, int(size))
        return +Decimal(math.factorial(int(n)))

    def _sqrt(self, node, x: Decimal) -> Decimal:
        if x < 0:
            raise ToolError(f"{self._segment(node)} has no real value: the square root of a negative number.")
        return x.sqrt()

    def _logarithm(self, node, x: Decimal, base: Decimal | None = None) -> Decimal:
        if x <= 0 or (base is not None and (base <= 0 or base == 1)):
            raise ToolError(f"{self._segment(node)} has no value: a logarithm needs a positive number "
                            "(and a positive base other than 1).")
        if base is None:
            return x.ln()
        # A few more digits for the quotient, so that log(8, 2) is 3, not 2.999…9.
        with localcontext(CONTEXT) as wider:
            wider.prec += 5
            quotient = x.ln() / base.ln()
        return +quotient

    def _log10(self, node, x: Decimal) -> Decimal:
        if x <= 0:
            raise ToolError(f"{self._segment(node)} has no value: a logarithm needs a positive number.")
        return x.log10()

    def _exp(self, node, x: Decimal) -> Decimal:
        size = x / Decimal(10).ln()
        if size >= MAX_DIGITS:
            raise self._too_large(node, int(size))
        return x.exp()

    def _round(self, node, x: Decimal, digits: Decimal = Decimal(0)) -> Decimal:
        # Halves away from zero, as taught and as spreadsheets round (Python's round()
        # rounds them to even).
        if digits != digits.to_integral_value() or abs(digits) > PRECISION:
            raise ToolError(f"{self._segment(node)}: round's second argument is a whole number of decimal "
                            f"places, at most {PRECISION}.")
        try:
            return x.quantize(Decimal(1).scaleb(-int(digits)), rounding=ROUND_HALF_UP)
        except InvalidOperation:
            raise ToolError(f"{self._segment(node)}: that many decimal places would pass the calculator's "
                            f"{PRECISION} significant digits.") from None


def _trigonometry(function):
    def apply(self, node, x: Decimal) -> Decimal:
        return FLOAT_DIGITS.create_decimal_from_float(function(float(x)))
    return apply


BINARY = {
    ast.Add: lambda self, node, a, b: a + b,
    ast.Sub: lambda self, node, a, b: a - b,
    ast.Mult: lambda self, node, a, b: a * b,
    ast.Div: lambda self, node, a, b: a / b,
    ast.FloorDiv: _Evaluation._floor_divide,
    ast.Mod: _Evaluation._modulo,
    ast.Pow: _Evaluation._power,
}

# name: (fewest arguments, most (None: any number), function)
FUNCTIONS = {
    "sqrt": (1, 1, _Evaluation._sqrt),
    "abs": (1, 1, lambda self, node, x: abs(x)),
    "round": (1, 2, _Evaluation._round),
    "floor": (1, 1, lambda self, node, x: x.to_integral_value(rounding=ROUND_FLOOR)),
    "ceil": (1, 1, lambda self, node, x: x.to_integral_value(rounding=ROUND_CEILING)),
    "ln": (1, 1, _Evaluation._logarithm),
    "log": (1, 2, _Evaluation._logarithm),
    "log10": (1, 1, _Evaluation._log10),
    "exp": (1, 1, _Evaluation._exp),
    "sin": (1, 1, _trigonometry(math.sin)),
    "cos": (1, 1, _trigonometry(math.cos)),
    "tan": (1, 1, _trigonometry(math.tan)),
    "min": (1, None, lambda self, node, *values: min(values)),
    "max": (1, None, lambda self, node, *values: max(values)),
    "factorial": (1, 1, _Evaluation._factorial),
}


def _text(value: Decimal) -> str:
    """0.3, 1024, -2.5, 1.267650600228229401496703205E+30: no trailing zeros, no
    exponent for numbers a person writes out."""
    value = value.normalize(CONTEXT)
    if value == 0:
        return "0"
    if -7 <= value.adjusted() < PRECISION:
        return format(value, "f")
    return str(value)


def _quoted(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


TOOL = Tool(
    name="calculator",
    description=(
        "Evaluates an arithmetic expression exactly (decimal arithmetic, 28 significant digits), e.g. "
        "(29.12 - 28.89) / 28.89 * 100 or sqrt(2) * 3^2. Use it for any arithmetic instead of computing in "
        f"your head. It knows {KNOWS}; angles are in radians."
    ),
    parameters={
        "type": "object",
        "properties": {
            "expression": {"type": "string", "maxLength": MAX_CHARS,
                           "description": "The expression, e.g. 1234.5 * 1.07 ** 3"},
        },
        "required": ["expression"],
        "additionalProperties": False,
    },
    function=calculate,
)
