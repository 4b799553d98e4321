using System.Text.Json;
using Peft.Models.UseLite;

// Prints the 512-d Universal Sentence Encoder lite embedding of each argument as JSON (one object per text, in an array
// when more than one text is given). With --cosine and two texts it also prints their cosine similarity.
var texts = args.Where(a => a != "--cosine").ToArray();
bool cosine = args.Contains("--cosine");
if (texts.Length == 0)
{
    Console.Error.WriteLine("usage: dotnet run --project samples/UseLite -- [--cosine] \"some text\" [\"more text\" ...]");
    return 2;
}

using var model = await UseLiteModel.LoadAsync();
float[][] embeddings = model.Embed(texts);
var results = texts.Select((text, i) => new
{
    text,
    tokens = model.Tokenizer.Encode(text),
    dimension = embeddings[i].Length,
    embedding = embeddings[i],
}).ToArray();

var options = new JsonSerializerOptions { WriteIndented = false };
Console.WriteLine(results.Length == 1 ? JsonSerializer.Serialize(results[0], options) : JsonSerializer.Serialize(results, options));
if (cosine && texts.Length == 2)
{
    double dot = embeddings[0].Zip(embeddings[1]).Sum(p => (double)p.First * p.Second);
    Console.Error.WriteLine($"cosine similarity: {dot:F6}");
}
return 0;
