using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Peft.Serialization;

/// <summary>
/// Reads <c>adapter_config.json</c> for <see cref="AdapterConfig.Read"/>: the file checks of <see cref="JsonFile"/> (a
/// regular file under the size cap, valid UTF-8, no duplicate keys, a JSON object), then the module selections
/// (<c>target_modules</c>, <c>exclude_modules</c>): a string must be a non-empty regular expression that compiles and a
/// list must hold non-empty names. Each problem is an <see cref="AdapterFormatException"/> naming the file and the field.
/// </summary>
internal static class AdapterConfigFile
{
    private static readonly string[] s_selections = ["target_modules", "exclude_modules"];

    /// <exception cref="FileNotFoundException">Nothing exists at <paramref name="path"/>.</exception>
    /// <exception cref="AdapterFormatException">Any other problem.</exception>
    internal static JsonObject Read(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var fullPath = Path.GetFullPath(path);
        var obj = JsonFile.ReadObject(fullPath, JsonFileKind.AdapterConfig);
        foreach (var key in s_selections)
        {
            CheckSelection(obj, key, fullPath);
        }
        return obj;
    }

    private static void CheckSelection(JsonObject obj, string key, string path)
    {
        switch (obj[key])
        {
            case JsonValue value when value.GetValueKind() == JsonValueKind.String:
            {
                string pattern = value.GetValue<string>();
                if (pattern.Length == 0)
                {
                    throw new AdapterFormatException(path, key,
                        $"\"{key}\" is an empty string; expected a regular expression, a list of module names, or null");
                }
                try
                {
                    _ = new Regex("^(?:" + pattern + ")$", RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
                }
                catch (ArgumentException e)
                {
                    throw new AdapterFormatException(path, key, $"\"{key}\" is not a valid regular expression ({e.Message})", e);
                }
                break;
            }
            case JsonArray array:
                for (int i = 0; i < array.Count; i++)
                {
                    if (array[i] is JsonValue item && item.GetValueKind() == JsonValueKind.String && item.GetValue<string>().Trim().Length == 0)
                    {
                        throw new AdapterFormatException(path, key, $"\"{key}\"[{i}] is an empty module name; expected a name such as \"q_proj\"");
                    }
                }
                break;
        }
    }
}
