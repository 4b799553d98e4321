using System.Text.Json;

namespace Peft.Text.Tests;

/// <summary>The committed SentencePiece test models and the ids SentencePiece itself gave for them (TestData/SentencePiece/README.md).</summary>
public static class SentencePieceGoldens
{
    public const string LlamaBpe = "llama-bpe.model";
    public const string Unigram = "unigram.model";
    public const string BpeTrim = "bpe-trim.model";

    public static string Folder => Path.Combine(AppContext.BaseDirectory, "TestData", "SentencePiece");

    public static string ModelPath(string model) => Path.Combine(Folder, model);

    public sealed record Case(string Text, int[] Ids, string[] Pieces, string Decoded);

    public sealed record Model(int VocabSize, int BosId, int EosId, int UnkId, IReadOnlyList<Case> Cases);

    private static readonly Lazy<Dictionary<string, Model>> All = new(Load);

    public static Model For(string model) => All.Value[model];

    /// <summary>(model, case index) pairs for theories; the index keeps test names short and stable.</summary>
    public static TheoryData<string, int> CaseIndices(string model)
    {
        var data = new TheoryData<string, int>();
        for (int i = 0; i < For(model).Cases.Count; i++) data.Add(model, i);
        return data;
    }

    private static Dictionary<string, Model> Load()
    {
        using var json = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Folder, "goldens.json")));
        var models = new Dictionary<string, Model>(StringComparer.Ordinal);
        foreach (var m in json.RootElement.GetProperty("models").EnumerateObject())
        {
            var cases = m.Value.GetProperty("cases").EnumerateArray().Select(c => new Case(
                c.GetProperty("text").GetString()!,
                c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                c.GetProperty("pieces").EnumerateArray().Select(e => e.GetString()!).ToArray(),
                c.GetProperty("decoded").GetString()!)).ToList();
            models[m.Name] = new Model(
                m.Value.GetProperty("vocab_size").GetInt32(), m.Value.GetProperty("bos_id").GetInt32(),
                m.Value.GetProperty("eos_id").GetInt32(), m.Value.GetProperty("unk_id").GetInt32(), cases);
        }
        return models;
    }
}
