using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Peft.Serialization;

/// <summary>
/// Typed reading of the fields of a JSON object with ranges: each method returns <see langword="null"/> for an absent
/// key (or JSON <c>null</c> where that means absent) and otherwise checks the JSON type and the range, reporting a problem
/// through the file kind's error factory with a message that names the key, the expected value and what was found.
/// </summary>
internal readonly struct JsonFields
{
    private readonly JsonObject _object;
    private readonly Func<string, string, Exception> _error;

    /// <param name="obj">The object whose fields are read.</param>
    /// <param name="error">Creates the file kind's exception from (field, problem).</param>
    internal JsonFields(JsonObject obj, Func<string, string, Exception> error)
    {
        _object = obj;
        _error = error;
    }

    internal JsonObject Object => _object;

    internal Exception Error(string field, string problem) => _error(field, problem);

    internal bool Has(string key) => _object.TryGetPropertyValue(key, out var node) && node is not null;

    internal JsonNode? Node(string key) => _object.TryGetPropertyValue(key, out var node) ? node : null;

    /// <summary>An integer in [<paramref name="min"/>, <paramref name="max"/>]; a number with a fraction, a string or an out-of-range value is refused.</summary>
    internal long? Long(string key, long min, long max)
    {
        var node = Node(key);
        if (node is null) return null;
        if (node.GetValueKind() != JsonValueKind.Number)
        {
            throw _error(key, $"\"{key}\" must be an integer in [{Format(min)}, {Format(max)}], not {Show(node)}");
        }
        var element = Element(node);
        if (!element.TryGetInt64(out long value))
        {
            // 2.0 is an integer written as a float; 1e30 and 2.5 are not usable integers.
            if (element.TryGetDouble(out double d) && double.IsFinite(d) && d == Math.Floor(d) && d >= long.MinValue && d < 9.2e18)
            {
                value = (long)d;
            }
            else
            {
                throw _error(key, $"\"{key}\" must be an integer in [{Format(min)}, {Format(max)}], not {Show(node)}");
            }
        }
        if (value < min || value > max)
        {
            throw _error(key, $"\"{key}\" must be an integer in [{Format(min)}, {Format(max)}], not {Format(value)}");
        }
        return value;
    }

    /// <summary>An integer in [<paramref name="min"/>, <paramref name="max"/>] that fits <see cref="int"/>.</summary>
    internal int? Int(string key, int min = 0, int max = int.MaxValue) => (int?)Long(key, min, max);

    /// <summary>
    /// A finite number in the range: above <paramref name="min"/> (or at least it when <paramref name="minInclusive"/>)
    /// and at most <paramref name="max"/>. NaN, infinities (and literals such as 1e400 that overflow to them) are refused.
    /// </summary>
    internal double? Number(string key, double min, bool minInclusive, double max = double.MaxValue)
    {
        var node = Node(key);
        if (node is null) return null;
        string range = $"{(minInclusive ? ">=" : ">")} {Format(min)}{(max < double.MaxValue ? $" and <= {Format(max)}" : "")}";
        if (node.GetValueKind() != JsonValueKind.Number)
        {
            throw _error(key, $"\"{key}\" must be a finite number {range}, not {Show(node)}");
        }
        var element = Element(node);
        if (!element.TryGetDouble(out double value) || !double.IsFinite(value))
        {
            throw _error(key, $"\"{key}\" must be a finite number {range}, not {Show(node)}");
        }
        if ((minInclusive ? value < min : value <= min) || value > max)
        {
            throw _error(key, $"\"{key}\" must be a finite number {range}, not {Show(node)}");
        }
        return value;
    }

    /// <summary>A JSON boolean.</summary>
    internal bool? Bool(string key)
    {
        var node = Node(key);
        if (node is null) return null;
        return node.GetValueKind() switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw _error(key, $"\"{key}\" must be true or false, not {Show(node)}"),
        };
    }

    /// <summary>A JSON string.</summary>
    internal string? String(string key)
    {
        var node = Node(key);
        if (node is null) return null;
        return node.GetValueKind() == JsonValueKind.String
            ? node.GetValue<string>()
            : throw _error(key, $"\"{key}\" must be a string, not {Show(node)}");
    }

    /// <summary>Like the typed readers, but the key must be present and not null.</summary>
    internal T Required<T>(string key, Func<JsonFields, string, T?> read, string expected) where T : struct
        => read(this, key) ?? throw _error(key, $"\"{key}\" is missing; it must be {expected}");

    /// <summary>Like <see cref="String"/>, but the key must be present.</summary>
    internal string RequiredString(string key)
        => String(key) ?? throw _error(key, $"\"{key}\" is missing; it must be a string");

    /// <summary>Like <see cref="Bool"/>, but the key must be present.</summary>
    internal bool RequiredBool(string key) => Required(key, (f, k) => f.Bool(k), "true or false");

    /// <summary>Like <see cref="Number"/> with no range but finiteness, but the key must be present.</summary>
    internal double RequiredNumber(string key) => Required(key, (f, k) => f.Number(k, double.MinValue, minInclusive: true), "a finite number");

    /// <summary>Like <see cref="Int"/>, but the key must be present.</summary>
    internal int RequiredInt(string key, int min = int.MinValue, int max = int.MaxValue) =>
        Required(key, (f, k) => f.Int(k, min, max), min == int.MinValue && max == int.MaxValue ? "an integer" : $"an integer from {min} to {max}");

    /// <summary>The fields of an adapter directory's <c>adapter_config.json</c> at <paramref name="path"/>: read as a JSON
    /// object (a malformed file is refused naming it), every problem reported as an <see cref="AdapterFormatException"/>
    /// naming the file and the field.</summary>
    /// <param name="path">The configuration file.</param>
    internal static JsonFields ReadAdapterConfig(string path) =>
        new(JsonFile.ReadObject(path, JsonFileKind.AdapterConfig), (field, problem) => new AdapterFormatException(path, field, problem));

    /// <summary>A short rendering of a JSON value for messages (long values are cut).</summary>
    internal static string Show(JsonNode? node)
    {
        if (node is null) return "null";
        var kind = node.GetValueKind();
        string text = node.ToJsonString();
        if (text.Length > 60) text = text[..57] + "...";
        return kind switch
        {
            JsonValueKind.Object or JsonValueKind.Array => $"{JsonFile.Describe(kind)} ({text})",
            JsonValueKind.String => $"the string {text}",
            _ => text,
        };
    }

    /// <summary>The node as a <see cref="JsonElement"/>, whether it was parsed or created in code.</summary>
    internal static JsonElement Element(JsonNode node)
        => node is JsonValue value && value.TryGetValue<JsonElement>(out var element) ? element : JsonSerializer.SerializeToElement(node);

    private static string Format(long value) => value.ToString(CultureInfo.InvariantCulture);

    private static string Format(double value) => value.ToString("R", CultureInfo.InvariantCulture);
}
