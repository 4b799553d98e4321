using System.Text.Json.Nodes;

namespace Peft.Serialization;

/// <summary>
/// Reads <c>adapter_config.json</c> for <see cref="AdapterConfig.Read"/>: the file checks of <see cref="JsonFile"/> (a
/// regular file under the size cap, valid UTF-8, no duplicate keys, a JSON object), each problem an
/// <see cref="AdapterFormatException"/> naming the file.
/// </summary>
internal static class AdapterConfigFile
{
    /// <exception cref="FileNotFoundException">Nothing exists at <paramref name="path"/>.</exception>
    /// <exception cref="AdapterFormatException">Any other problem.</exception>
    internal static JsonObject Read(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return JsonFile.ReadObject(path, JsonFileKind.AdapterConfig);
    }
}
